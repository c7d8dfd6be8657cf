//! Giving freed memory back to the kernel. After a burst the shards' pools
//! trim to their working set (`ShardContext::trim`), but the allocator
//! keeps the freed pages in its arenas, fragmented among live ones, so RSS
//! stays at the burst's high-water mark. `malloc_trim` returns the free
//! pages (glibc madvises them away, arena by arena).
#![allow(unsafe_code, reason = "calling glibc's malloc_trim")]

/// Returns the allocator's free pages to the kernel, where the allocator
/// can (glibc); elsewhere it does nothing.
pub(crate) fn give_back_free_pages() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a byte count to keep at the top of the heap
    // and touches only the allocator's own free lists, under its locks; it
    // is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
