//! Per-shard pools of connection buffers: a connection on the ring path
//! takes a read and a write buffer while it has work and gives them back
//! when it goes idle, so idle connections hold no buffers and busy ones do
//! not allocate.

use std::cell::RefCell;

use crate::http::parse::HeaderSpan;

/// Most buffers a pool keeps; more are freed. Busy connections hold theirs,
/// so this only bounds what a burst leaves behind.
const MAX_POOLED: usize = 512;

/// Size of a fresh read buffer.
pub(crate) const READ_BUFFER: usize = 4096;

/// A shard's spare buffers.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    read: RefCell<Vec<Vec<u8>>>,
    write: RefCell<Vec<Vec<u8>>>,
    headers: RefCell<Vec<Vec<HeaderSpan>>>,
}

impl BufferPool {
    /// A zero-filled read buffer of at least [`READ_BUFFER`] bytes.
    pub(crate) fn take_read(&self) -> Vec<u8> {
        self.read
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; READ_BUFFER])
    }

    /// An empty write buffer.
    pub(crate) fn take_write(&self) -> Vec<u8> {
        self.write
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(READ_BUFFER))
    }

    /// Keeps a read buffer for reuse (its contents are stale, never read).
    pub(crate) fn put_read(&self, buffer: Vec<u8>) {
        Self::put(&self.read, buffer);
    }

    /// Keeps a write buffer for reuse.
    pub(crate) fn put_write(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        Self::put(&self.write, buffer);
    }

    /// An empty header table.
    pub(crate) fn take_headers(&self) -> Vec<HeaderSpan> {
        self.headers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(16))
    }

    /// Keeps a header table for reuse.
    pub(crate) fn put_headers(&self, table: Vec<HeaderSpan>) {
        Self::put(&self.headers, table);
    }

    fn put<T>(pool: &RefCell<Vec<Vec<T>>>, buffer: Vec<T>) {
        if buffer.capacity() == 0 {
            return;
        }
        let mut pool = pool.borrow_mut();
        if pool.len() < MAX_POOLED {
            pool.push(buffer);
        }
    }
}
