//! The provided-buffer ring: a pool of equal receive buffers the kernel
//! picks from when a multishot receive completes, so an idle connection
//! holds no buffer of its own.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Buffer group id of the shard's receive pool.
pub(crate) const GROUP: u16 = 0;

/// Page alignment the kernel requires of a buffer ring.
const PAGE: usize = 4096;

/// `count` buffers of `size` bytes and the ring that lends them to the kernel.
pub(crate) struct BufferRing {
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    memory: *mut u8,
    memory_layout: Layout,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufferRing {
    /// Allocates the pool; `count` must be a power of two.
    pub(crate) fn new(count: u16, size: usize) -> io::Result<BufferRing> {
        assert!(
            count.is_power_of_two(),
            "buffer count must be a power of two"
        );
        let ring_layout =
            Layout::from_size_align(usize::from(count) * size_of::<BufRingEntry>(), PAGE)
                .map_err(io::Error::other)?;
        let memory_layout =
            Layout::from_size_align(usize::from(count) * size, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count and size are non-zero).
        let ring = unsafe { alloc_zeroed(ring_layout) };
        #[allow(clippy::cast_ptr_alignment, reason = "the layout is page-aligned")]
        let ring = ring.cast::<BufRingEntry>();
        // SAFETY: as above.
        let memory = unsafe { alloc_zeroed(memory_layout) };
        if ring.is_null() || memory.is_null() {
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
        debug_assert!(id < self.count && len <= self.size);
        // SAFETY: `id < count`, so the range lies inside `memory`; the caller
        // guarantees the kernel is not writing to this buffer now.
        unsafe { std::slice::from_raw_parts(self.memory.add(usize::from(id) * self.size), len) }
    }

    /// Returns buffer `id` to the kernel.
    pub(crate) fn give_back(&mut self, id: u16) {
        self.write_entry(id);
        self.publish();
    }

    fn write_entry(&mut self, id: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`, inside the ring allocation; the kernel reads
        // entries only up to the published tail, which does not cover this
        // slot until `publish`.
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(self.memory as u64 + u64::from(id) * self.size as u64);
        entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: `ring` is the page-aligned first entry of the ring, as
        // `BufRingEntry::tail` requires; the tail field is a u16 the kernel
        // reads atomically, so it is accessed through an AtomicU16.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `alloc_zeroed` with these layouts.
        unsafe {
            dealloc(self.ring.cast(), self.ring_layout);
            dealloc(self.memory, self.memory_layout);
        }
    }
}
