//! The global allocator: mimalloc, called the way its v3 is fast.
//!
//! The `mimalloc` crate's `GlobalAlloc` sends every allocation through `mi_malloc_aligned`,
//! whatever the alignment. In mimalloc v3 that call takes the plain path only for a block
//! that happens to be aligned already (a small one) or whose rounded size is a power of
//! two; anything else, such as a 1.5 KiB buffer with an alignment of 8, goes to
//! `mi_theap_malloc_zero_aligned_at_generic`, which over-allocates by the alignment and
//! costs about 160 instructions a call (callgrind: 4.5 such calls per XADD, 700
//! instructions of its 19,300). Every block mimalloc hands out is at least word-aligned
//! (its size classes are multiples of the word and its pages start 16-aligned), so a layout
//! asking for no more than that is served by the plain `mi_malloc` family, and only larger
//! alignments use the aligned calls.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has: a word.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, for `#[global_allocator]` in the binary, its examples and benches.
pub struct Allocator;

// SAFETY: each method hands the layout to the mimalloc call that honours its size and
// alignment (the plain calls only when every block already has the alignment), frees with
// mimalloc's own `mi_free`, and returns null on failure as `GlobalAlloc` requires.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls take any size and a power-of-two alignment.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment (plain calls only where every block has it).
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment the plain path and the aligned path serve comes back
    /// aligned, zeroed where asked, and keeps its bytes through a realloc.
    #[test]
    fn blocks_are_aligned_zeroed_and_kept() {
        let a = Allocator;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1usize,
                3,
                7,
                8,
                12,
                24,
                48,
                100,
                1000,
                1500,
                5000,
                70_000,
                3 << 20,
            ] {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: a non-zero size; every block is freed with its layout.
                unsafe {
                    let p = a.alloc_zeroed(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    std::ptr::write_bytes(p, 0xAB, size);
                    let grown = size * 3 + 5;
                    let q = a.realloc(p, layout, grown);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc size {grown} align {align}");
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xAB));
                    a.dealloc(q, Layout::from_size_align(grown, align).expect("layout"));
                    let r = a.alloc(layout);
                    assert_eq!(r as usize % align, 0);
                    a.dealloc(r, layout);
                }
            }
        }
    }
}
