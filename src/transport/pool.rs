//! Per-shard pools of connection buffers: a connection on the ring path
//! takes a read and a write buffer while it has work and gives them back
//! when it goes idle, so idle connections hold no buffers and busy ones do
//! not allocate. After a burst the pools shrink back to their working set
//! (`Spare::trim`, called by the shard every few seconds).

pub(crate) use crate::route::pooled::Spare;

use crate::http::parse::HeaderSpan;

/// Most buffers a pool keeps; more are freed. Busy connections hold theirs,
/// so this only bounds what a burst leaves behind until the next trims.
const MAX_POOLED: usize = 512;

/// Largest read buffer a pool keeps: one grown for a large request is
/// freed when given back, so the pool does not keep a burst's largest sizes.
const MAX_KEPT_BYTES: usize = 64 << 10;

/// Largest write buffer a pool keeps: room for a response with a body of
/// a few hundred KiB (a static file kept in memory, a chunk of a large
/// one), so serving one again does not fault fresh pages in each time
/// (measured: a fifth of a 64 KiB file's cost). The trims still free
/// what a burst left.
const MAX_KEPT_WRITE_BYTES: usize = 320 << 10;

/// Entries of a fresh header table, and its bytes.
const HEADER_TABLE: usize = 16;
const HEADER_TABLE_BYTES: usize = HEADER_TABLE * size_of::<HeaderSpan>();

/// Size of a fresh read buffer.
pub(crate) const READ_BUFFER: usize = 4096;

/// A shard's spare buffers.
#[derive(Debug)]
pub(crate) struct BufferPool {
    read: Spare<Vec<u8>>,
    write: Spare<Vec<u8>>,
    headers: Spare<Vec<HeaderSpan>>,
}

impl Default for BufferPool {
    fn default() -> Self {
        Self {
            read: Spare::new(MAX_POOLED),
            write: Spare::new(MAX_POOLED),
            headers: Spare::new(MAX_POOLED),
        }
    }
}

impl BufferPool {
    /// A zero-filled read buffer of at least [`READ_BUFFER`] bytes.
    pub(crate) fn take_read(&self) -> Vec<u8> {
        self.read.take().unwrap_or_else(|| vec![0; READ_BUFFER])
    }

    /// An empty write buffer.
    pub(crate) fn take_write(&self) -> Vec<u8> {
        self.write
            .take()
            .unwrap_or_else(|| Vec::with_capacity(READ_BUFFER))
    }

    /// Keeps a read buffer for reuse (its contents are stale, never read).
    pub(crate) fn put_read(&self, buffer: Vec<u8>) {
        Self::put(&self.read, buffer, MAX_KEPT_BYTES);
    }

    /// Keeps a write buffer for reuse.
    pub(crate) fn put_write(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        Self::put(&self.write, buffer, MAX_KEPT_WRITE_BYTES);
    }

    /// An empty header table.
    pub(crate) fn take_headers(&self) -> Vec<HeaderSpan> {
        self.headers
            .take()
            .unwrap_or_else(|| Vec::with_capacity(HEADER_TABLE))
    }

    /// Keeps a header table for reuse.
    pub(crate) fn put_headers(&self, table: Vec<HeaderSpan>) {
        Self::put(&self.headers, table, MAX_KEPT_BYTES);
    }

    fn put<T>(pool: &Spare<Vec<T>>, buffer: Vec<T>, max: usize) {
        let bytes = buffer.capacity() * size_of::<T>();
        if bytes != 0 && bytes <= max {
            pool.put(buffer);
        }
    }

    /// Frees the buffers not needed since the last trim; returns the bytes
    /// freed (about).
    pub(crate) fn trim(&self) -> usize {
        (self.read.trim() + self.write.trim()) * READ_BUFFER
            + self.headers.trim() * HEADER_TABLE_BYTES
    }

    /// Bytes of the spare buffers (about: fresh sizes).
    pub(crate) fn pooled_bytes(&self) -> usize {
        (self.read.len() + self.write.len()) * READ_BUFFER + self.headers.len() * HEADER_TABLE_BYTES
    }

    /// Buffers spare now (read, write, header tables).
    #[cfg(test)]
    pub(crate) fn spare(&self) -> (usize, usize, usize) {
        (self.read.len(), self.write.len(), self.headers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::BufferPool;

    #[test]
    fn buffers_grown_past_the_kept_size_are_not_pooled() {
        let pool = BufferPool::default();
        pool.put_read(vec![0; 1 << 20]);
        pool.put_write(Vec::with_capacity(1 << 20));
        pool.put_write(Vec::with_capacity(256 << 10));
        pool.put_read(pool.take_read());
        assert_eq!(pool.spare(), (1, 1, 0));
    }
}
