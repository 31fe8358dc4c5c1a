//! The byte ABI between host and guest: the names the guest must export, how a region of guest
//! memory travels in one `i64`, and bounds-checked access to guest memory.
//!
//! docs/wasm-abi.md is the specification for plugin authors; this file is its implementation.
//! Every pointer a guest hands over is checked against the current size of its memory before a
//! byte is touched, so a bad pointer becomes an error naming the region, never a host panic.
//!
//! A region is packed as `(ptr << 32) | (is_error << 31) | len`, read as an unsigned 64-bit
//! value: the high word is the address, bit 31 of the low word marks the bytes as an error
//! message, and the low 31 bits are the length. `0` is the empty region (and, from
//! `config_get`/`state_get`, "absent").

use std::fmt;

/// Export names (see docs/wasm-abi.md).
pub(crate) const MEMORY: &str = "memory";
pub(crate) const ALLOC: &str = "alloc";
pub(crate) const DEALLOC: &str = "dealloc";
pub(crate) const EXECUTE: &str = "execute";
pub(crate) const INITIALIZE: &str = "_initialize";
pub(crate) const METADATA: &str = "bilayer_metadata";

/// The module name of the host imports.
pub(crate) const HOST_MODULE: &str = "bilayer";

const ERROR_FLAG: u64 = 0x8000_0000;
const LEN_MASK: u64 = 0x7FFF_FFFF;

/// The largest length a region can carry (2 GiB - 1).
pub(crate) const MAX_REGION_LEN: usize = LEN_MASK as usize;

/// A run of bytes in guest memory, as packed into an `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    pub ptr: u32,
    pub len: u32,
    /// The bytes are an error message rather than a result.
    pub is_error: bool,
}

impl Region {
    pub(super) const EMPTY: Region = Region {
        ptr: 0,
        len: 0,
        is_error: false,
    };

    pub(super) fn unpack(packed: i64) -> Region {
        let bits = packed as u64;
        Region {
            ptr: (bits >> 32) as u32,
            len: (bits & LEN_MASK) as u32,
            is_error: bits & ERROR_FLAG != 0,
        }
    }

    pub(super) fn pack(self) -> i64 {
        let flag = if self.is_error { ERROR_FLAG } else { 0 };
        ((u64::from(self.ptr) << 32) | flag | (u64::from(self.len) & LEN_MASK)) as i64
    }

    /// The bytes of this region in `memory`, or why not.
    pub(super) fn slice(self, memory: &[u8]) -> Result<&[u8], OutOfBounds> {
        guest_range(memory.len(), self.ptr, self.len).map(|range| &memory[range])
    }
}

/// A guest pointer and length that do not fit in its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfBounds {
    pub ptr: u32,
    pub len: u32,
    pub memory_size: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at {:#x} are outside the guest's memory of {} bytes",
            self.len, self.ptr, self.memory_size
        )
    }
}

/// The host range of `len` bytes at guest address `ptr`, checked against `memory_size`.
pub(crate) fn guest_range(
    memory_size: usize,
    ptr: u32,
    len: u32,
) -> Result<std::ops::Range<usize>, OutOfBounds> {
    let start = ptr as usize;
    start
        .checked_add(len as usize)
        .filter(|&end| end <= memory_size)
        .map(|end| start..end)
        .ok_or(OutOfBounds {
            ptr,
            len,
            memory_size,
        })
}

/// A wasm `i32` pointer or length argument read as the unsigned value it is.
pub(crate) fn unsigned(value: i32) -> u32 {
    value as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_round_trip_through_i64() {
        for region in [
            Region::EMPTY,
            Region {
                ptr: 1024,
                len: 5,
                is_error: false,
            },
            Region {
                ptr: u32::MAX,
                len: LEN_MASK as u32,
                is_error: true,
            },
        ] {
            assert_eq!(Region::unpack(region.pack()), region);
        }
        assert_eq!(Region::EMPTY.pack(), 0);
        assert_eq!(
            Region::unpack((1024_i64 << 32) | 0x8000_0003),
            Region {
                ptr: 1024,
                len: 3,
                is_error: true
            }
        );
    }

    #[test]
    fn ranges_outside_memory_are_refused() {
        assert_eq!(guest_range(100, 90, 10), Ok(90..100));
        assert!(guest_range(100, 90, 11).is_err());
        assert!(guest_range(100, u32::MAX, 2).is_err());
        assert_eq!(guest_range(100, 100, 0), Ok(100..100));
    }
}
