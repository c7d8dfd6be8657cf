//! The provided-buffer ring: a pool of equal receive buffers the kernel
//! picks from when a multishot receive completes, so an idle connection
//! holds no buffer of its own.
//!
//! The ring's entries are memory the kernel reads concurrently, so they are
//! only ever written through raw pointers, field by field, never through a
//! Rust reference.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// Buffer group id of the shard's receive pool.
pub(crate) const GROUP: u16 = 0;

/// Page alignment the kernel requires of a buffer ring.
const PAGE: usize = 4096;

/// One ring entry as the kernel lays it out (`struct io_uring_buf`). The
/// first entry's `reserved` field is the ring's tail.
#[repr(C)]
struct Entry {
    addr: u64,
    len: u32,
    bid: u16,
    reserved: u16,
}

const _: () = assert!(size_of::<Entry>() == size_of::<io_uring::types::BufRingEntry>());

/// `count` buffers of `size` bytes and the ring that lends them to the kernel.
pub(crate) struct BufferRing {
    ring: *mut Entry,
    ring_layout: Layout,
    memory: *mut u8,
    memory_layout: Layout,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufferRing {
    /// Allocates the pool: `count` (a power of two) buffers of `size` bytes
    /// (more than zero, at most `u32::MAX`).
    pub(crate) fn new(count: u16, size: usize) -> io::Result<BufferRing> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        if !count.is_power_of_two() {
            return Err(invalid("the receive buffer count must be a power of two"));
        }
        if size == 0 || u32::try_from(size).is_err() {
            return Err(invalid("a receive buffer must hold 1 to 4 GiB - 1 bytes"));
        }
        let ring_bytes = usize::from(count)
            .checked_mul(size_of::<Entry>())
            .ok_or_else(|| invalid("too many receive buffers"))?;
        let memory_bytes = usize::from(count)
            .checked_mul(size)
            .ok_or_else(|| invalid("receive buffers too large"))?;
        let ring_layout = Layout::from_size_align(ring_bytes, PAGE).map_err(io::Error::other)?;
        let memory_layout = Layout::from_size_align(memory_bytes, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size: `count` is a power of
        // two (so at least 1) and `size` was checked non-zero above.
        let ring = unsafe { alloc_zeroed(ring_layout) };
        #[allow(clippy::cast_ptr_alignment, reason = "the layout is page-aligned")]
        let ring = ring.cast::<Entry>();
        // SAFETY: as above.
        let memory = unsafe { alloc_zeroed(memory_layout) };
        if ring.is_null() || memory.is_null() {
            // SAFETY: each non-null pointer came from `alloc_zeroed` with its layout.
            unsafe {
                if !ring.is_null() {
                    dealloc(ring.cast(), ring_layout);
                }
                if !memory.is_null() {
                    dealloc(memory, memory_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut pool = BufferRing {
            ring,
            ring_layout,
            memory,
            memory_layout,
            count,
            size,
            tail: 0,
        };
        for id in 0..count {
            pool.write_entry(id);
        }
        pool.publish();
        Ok(pool)
    }

    /// Address and entry count to register with the kernel.
    pub(crate) fn registration(&self) -> (u64, u16) {
        (self.ring as u64, self.count)
    }

    /// The first `len` bytes of buffer `id`.
    ///
    /// # Safety
    /// The kernel must have handed buffer `id` to us (a receive completion
    /// named it) and it must not have been returned with `give_back` since.
    pub(crate) unsafe fn bytes(&self, id: u16, len: usize) -> &[u8] {
        assert!(
            id < self.count && len <= self.size,
            "buffer {id} out of range"
        );
        // SAFETY: `id < count` and `len <= size`, so the range lies inside
        // `memory`; the caller guarantees the kernel is not writing to this
        // buffer now.
        unsafe { std::slice::from_raw_parts(self.memory.add(usize::from(id) * self.size), len) }
    }

    /// Returns buffer `id` to the kernel.
    pub(crate) fn give_back(&mut self, id: u16) {
        self.write_entry(id);
        self.publish();
    }

    fn write_entry(&mut self, id: u16) {
        assert!(id < self.count, "buffer {id} out of range");
        let slot = usize::from(self.tail & (self.count - 1));
        let addr = self.memory as u64 + u64::from(id) * self.size as u64;
        let len = u32::try_from(self.size).expect("checked in new");
        // SAFETY: `slot < count`, so the entry lies inside the ring
        // allocation. The kernel reads entries only up to the published
        // tail, which does not cover this slot until `publish`, so these
        // writes race with nothing; they go through raw pointers because
        // the kernel shares this memory (no `&mut` may exist over it). The
        // `reserved` field, which is the tail in entry 0, is not written.
        unsafe {
            let entry = self.ring.add(slot);
            (&raw mut (*entry).addr).write(addr);
            (&raw mut (*entry).len).write(len);
            (&raw mut (*entry).bid).write(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is the `reserved` field of the page-aligned first
        // entry, a u16 the kernel reads concurrently; it is accessed only
        // through an `AtomicU16`, which has the same size and alignment.
        let tail = unsafe { &*(&raw const (*self.ring).reserved).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `alloc_zeroed` with these layouts,
        // and the ring that registered them is gone (see `Ring`'s drop,
        // which leaks the pool instead while the kernel may still use it).
        unsafe {
            dealloc(self.ring.cast(), self.ring_layout);
            dealloc(self.memory, self.memory_layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BufferRing;

    #[test]
    fn sizes_are_checked() {
        assert!(BufferRing::new(3, 2048).is_err());
        assert!(BufferRing::new(4, 0).is_err());
        assert!(BufferRing::new(0, 2048).is_err());
        let pool = BufferRing::new(4, 16).unwrap();
        assert_eq!(pool.registration().1, 4);
    }
}
