//! Running a connection's request work in a pooled heap block.
//!
//! The future that decodes, routes, calls the handler and encodes is large
//! (the handler's inline future, the router's parameters, the writer). Kept
//! inside each connection's task it would make every idle connection pay for
//! it. Instead it is placed in a block taken from a per-shard pool for as
//! long as it runs: an idle connection stays small and a busy one does not
//! allocate.
#![allow(unsafe_code, reason = "placing a future in reused raw memory")]

use std::cell::RefCell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes in one block; futures larger than this are boxed instead.
const BLOCK_BYTES: usize = 4096;

/// Most blocks a pool keeps.
const MAX_POOLED: usize = 256;

#[repr(C, align(64))]
pub(crate) struct Block([MaybeUninit<u8>; BLOCK_BYTES]);

/// A shard's spare blocks.
#[derive(Default)]
pub(crate) struct BlockPool {
    free: RefCell<Vec<Box<Block>>>,
}

impl std::fmt::Debug for BlockPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockPool")
            .field("free", &self.free.borrow().len())
            .finish()
    }
}

impl BlockPool {
    /// Moves `future` into a pooled block; the returned future runs it and
    /// gives the block back when done or dropped.
    pub(crate) fn place<F: Future>(&self, future: F) -> Placed<'_, F> {
        if size_of::<F>() > BLOCK_BYTES || align_of::<F>() > align_of::<Block>() {
            return Placed::Boxed(Box::pin(future));
        }
        let mut block = self.free.borrow_mut().pop().unwrap_or_else(|| {
            // SAFETY: a block is an array of `MaybeUninit<u8>`, for which
            // uninitialised memory is a valid value.
            unsafe { Box::<Block>::new_uninit().assume_init() }
        });
        let slot = block.0.as_mut_ptr().cast::<F>();
        // SAFETY: the block is large and aligned enough for `F` (checked
        // above) and holds no live value.
        unsafe { slot.write(future) };
        Placed::Pooled {
            slot,
            block: Some(block),
            pool: self,
        }
    }
}

/// A future running inside a pooled block (or boxed, when too large).
pub(crate) enum Placed<'p, F: Future> {
    /// In a pooled block; `slot` points into `block`.
    Pooled {
        slot: *mut F,
        block: Option<Box<Block>>,
        pool: &'p BlockPool,
    },
    /// Too large for a block.
    Boxed(Pin<Box<F>>),
}

impl<F: Future> Future for Placed<'_, F> {
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

impl<F: Future> Placed<'_, F> {
    /// Drops the future in place and returns its block to the pool.
    fn release(&mut self) {
        if let Placed::Pooled { slot, block, pool } = self
            && let Some(block) = block.take()
        {
            // SAFETY: `slot` holds a live `F` (the block is still ours);
            // it is dropped exactly once, here, before the block is reused.
            unsafe { std::ptr::drop_in_place(*slot) };
            let mut free = pool.free.borrow_mut();
            if free.len() < MAX_POOLED {
                free.push(block);
            }
        }
    }
}

impl<F: Future> Drop for Placed<'_, F> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::{BlockPool, Placed};

    /// Counts its drops.
    struct Guard(Rc<Cell<u32>>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
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
            assert_eq!(pool.free.borrow().len(), 1);
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
        assert_eq!(pool.free.borrow().len(), 1);
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
