//! Per-shard pools of reused memory ([`Spare`], trimmed to the working
//! set), and futures placed in pooled heap blocks.
//!
//! The future that decodes, routes, calls the handler and encodes is large
//! (the handler's inline future, the router's parameters, the writer). Kept
//! inside each connection's task it would make every idle connection pay for
//! it. Instead it is placed in a block taken from a per-shard pool for as
//! long as it runs: an idle connection stays small and a busy one does not
//! allocate. Each middleware layer's future is placed the same way
//! ([`BlockPool::place_dyn`], type-erased), so a chain of layers allocates
//! nothing per request either.
#![allow(unsafe_code, reason = "placing a future in reused raw memory")]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes in one block; futures larger than this are boxed instead.
const BLOCK_BYTES: usize = 4096;

/// Most blocks a pool keeps.
const MAX_POOLED: usize = 256;

/// Spare items kept for reuse, trimmed to the working set: what stayed
/// spare through a whole window between two trims was not needed, and the
/// next trim frees it. A burst's high-water mark is gone two trims after
/// the burst.
#[derive(Debug)]
pub(crate) struct Spare<T> {
    items: RefCell<Vec<T>>,
    /// The fewest items spare at any moment since the last trim.
    low: Cell<usize>,
    max: usize,
}

impl<T> Spare<T> {
    /// An empty pool that keeps at most `max` items.
    pub(crate) const fn new(max: usize) -> Self {
        Self {
            items: RefCell::new(Vec::new()),
            low: Cell::new(0),
            max,
        }
    }

    /// A spare item, if there is one.
    pub(crate) fn take(&self) -> Option<T> {
        let mut items = self.items.borrow_mut();
        let item = items.pop();
        self.low.set(self.low.get().min(items.len()));
        item
    }

    /// Keeps `item` for reuse, or drops it when the pool is full.
    pub(crate) fn put(&self, item: T) {
        let mut items = self.items.borrow_mut();
        if items.len() < self.max {
            items.push(item);
        }
    }

    /// Frees the items no one took since the last trim (the oldest: the
    /// pool is a stack); returns how many.
    pub(crate) fn trim(&self) -> usize {
        let mut items = self.items.borrow_mut();
        let unused = self.low.get().min(items.len());
        items.drain(..unused);
        if items.capacity() > 4 * items.len().max(16) {
            items.shrink_to_fit();
        }
        self.low.set(items.len());
        unused
    }

    /// Items spare now.
    pub(crate) fn len(&self) -> usize {
        self.items.borrow().len()
    }
}

#[repr(C, align(64))]
pub(crate) struct Block([MaybeUninit<u8>; BLOCK_BYTES]);

/// A shard's spare blocks, trimmed to the working set like the buffers.
pub(crate) struct BlockPool {
    free: Spare<Box<Block>>,
}

impl Default for BlockPool {
    fn default() -> Self {
        Self {
            free: Spare::new(MAX_POOLED),
        }
    }
}

impl std::fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPool")
            .field("free", &self.free.len())
            .finish()
    }
}

impl BlockPool {
    /// Bytes of the spare blocks.
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.free.len() * BLOCK_BYTES
    }

    /// Frees the blocks not needed since the last trim; returns the bytes
    /// freed.
    pub(crate) fn trim(&self) -> usize {
        self.free.trim() * BLOCK_BYTES
    }

    /// Moves `future` into a pooled block; the returned future runs it and
    /// gives the block back when done or dropped.
    pub(crate) fn place<F: Future>(&self, future: F) -> Placed<'_, F> {
        self.place_with(|| future)
    }

    /// Like [`place`](Self::place), with the future made by `make` straight
    /// into the block: a future passed by value is first made on the stack
    /// and then copied, all of its size (kilobytes for a request's work).
    pub(crate) fn place_with<F: Future>(&self, make: impl FnOnce() -> F) -> Placed<'_, F> {
        match self.write_in_block(make) {
            Ok((slot, block)) => Placed::Pooled {
                slot,
                block: Some(block),
                pool: self,
            },
            Err(make) => Placed::Boxed(Box::pin(make())),
        }
    }

    /// Like [`place`](Self::place), with the future's type erased: how a
    /// middleware layer's future is held by the layer outside it, at a
    /// fixed size whatever the layer.
    pub(crate) fn place_dyn<'p, F: Future<Output = ()> + 'p>(&'p self, future: F) -> PlacedDyn<'p> {
        match self.write_in_block(|| future) {
            Ok((slot, block)) => Placed::Pooled {
                slot: slot as *mut (dyn Future<Output = ()> + 'p),
                block: Some(block),
                pool: self,
            },
            Err(make) => Placed::Boxed(Box::pin(make())),
        }
    }

    /// Writes what `make` returns into a block from the pool (or a new
    /// one); gives `make` back, uncalled, when its value is too large or
    /// too aligned for a block.
    fn write_in_block<F, M: FnOnce() -> F>(&self, make: M) -> Result<(*mut F, Box<Block>), M> {
        if size_of::<F>() > BLOCK_BYTES || align_of::<F>() > align_of::<Block>() {
            return Err(make);
        }
        let mut block = self.free.take().unwrap_or_else(|| {
            // SAFETY: a block is an array of `MaybeUninit<u8>`, for which
            // uninitialised memory is a valid value.
            unsafe { Box::<Block>::new_uninit().assume_init() }
        });
        // SAFETY: the block is large and aligned enough for `F` (checked
        // above) and holds no live value; a `MaybeUninit` may be anything.
        let slot = unsafe { &mut *block.0.as_mut_ptr().cast::<MaybeUninit<F>>() };
        // Through a reference the compiler knows is valid for all of `F`,
        // so `make` can write its value there rather than copy it in.
        let slot = std::ptr::from_mut(slot.write(make()));
        Ok((slot, block))
    }
}

/// A placed future whose type is erased.
pub(crate) type PlacedDyn<'p> = Placed<'p, dyn Future<Output = ()> + 'p>;

/// A future running inside a pooled block (or boxed, when too large).
pub(crate) enum Placed<'p, F: Future + ?Sized> {
    /// In a pooled block; `slot` points into `block`.
    Pooled {
        slot: *mut F,
        block: Option<Box<Block>>,
        pool: &'p BlockPool,
    },
    /// Too large for a block.
    Boxed(Pin<Box<F>>),
}

impl<F: Future + ?Sized> Future for Placed<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // `Placed` is `Unpin` (a raw pointer, a box, a reference): the
        // future it runs never moves with it.
        let this = self.get_mut();
        match this {
            Placed::Boxed(future) => future.as_mut().poll(cx),
            Placed::Pooled { slot, block, .. } => {
                assert!(
                    block.is_some(),
                    "a placed future was polled after it completed"
                );
                // SAFETY: `slot` holds a live `F` inside a heap block that
                // never moves while `block` is `Some`, so pinning it is sound.
                let poll = unsafe { Pin::new_unchecked(&mut **slot) }.poll(cx);
                if poll.is_ready() {
                    this.release();
                }
                poll
            }
        }
    }
}

impl<F: Future + ?Sized> Placed<'_, F> {
    /// Drops the future in place and returns its block to the pool.
    fn release(&mut self) {
        if let Placed::Pooled { slot, block, pool } = self
            && let Some(block) = block.take()
        {
            // SAFETY: `slot` holds a live `F` (the block is still ours);
            // it is dropped exactly once, here, before the block is reused.
            unsafe { std::ptr::drop_in_place(*slot) };
            pool.free.put(block);
        }
    }
}

impl<F: Future + ?Sized> Drop for Placed<'_, F> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::{BlockPool, Placed, Spare};

    /// Counts its drops.
    struct Guard(Rc<Cell<u32>>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn a_trim_frees_what_stayed_spare_through_the_window() {
        let pool = Spare::new(100);
        for n in 0..10 {
            pool.put(n);
        }
        // The first window began empty: everything was needed once.
        assert_eq!(pool.trim(), 0);
        // Only three are taken (and given back) in the next window.
        let taken: Vec<_> = (0..3).filter_map(|_| pool.take()).collect();
        for n in taken {
            pool.put(n);
        }
        assert_eq!(pool.trim(), 7);
        assert_eq!(pool.len(), 3);
        // Idle through a whole window: the rest goes too.
        assert_eq!(pool.trim(), 3);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn runs_in_a_reused_block_and_drops_once() {
        let pool = BlockPool::default();
        let drops = Rc::new(Cell::new(0));
        for round in 1..=3 {
            let guard = Guard(Rc::clone(&drops));
            let placed = pool.place(async move {
                let _guard = guard;
                futures_lite::future::yield_now().await;
                7
            });
            assert!(matches!(placed, Placed::Pooled { .. }));
            assert_eq!(futures_lite::future::block_on(placed), 7);
            assert_eq!(drops.get(), round);
            assert_eq!(pool.free.len(), 1);
        }
    }

    #[test]
    fn dropping_unfinished_work_drops_the_future() {
        let pool = BlockPool::default();
        let drops = Rc::new(Cell::new(0));
        let guard = Guard(Rc::clone(&drops));
        let placed = pool.place(async move {
            let _guard = guard;
            futures_lite::future::pending::<()>().await;
        });
        drop(placed);
        assert_eq!(drops.get(), 1);
        assert_eq!(pool.free.len(), 1);
    }

    #[test]
    fn large_futures_are_boxed() {
        let pool = BlockPool::default();
        let big = [1u8; 8192];
        let placed = pool.place(async move { big.iter().map(|&b| u32::from(b)).sum::<u32>() });
        assert!(matches!(placed, Placed::Boxed(_)));
        assert_eq!(futures_lite::future::block_on(placed), 8192);
    }
}
