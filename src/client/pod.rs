//! Plain-old-data payloads: send a `[u64; 8]` or a `#[repr(C)]` struct
//! without `unsafe` at the call site.

/// A type whose every byte is initialised and whose every bit pattern is a
/// valid value, so it can be sent as its bytes and rebuilt from any bytes
/// of its size (what `bytemuck::Pod` means).
///
/// Implemented for the integer and float types and for arrays of `Pod`
/// types. Implement it for your own `#[repr(C)]` (or `#[repr(transparent)]`)
/// structs whose fields are all `Pod` and that have no padding:
///
/// ```
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Quote {
///     bid: f64,
///     ask: f64,
///     size: u64,
/// }
/// // SAFETY: repr(C), every field is Pod, 24 bytes with no padding.
/// unsafe impl ringbus::client::Pod for Quote {}
///
/// let q = Quote { bid: 1.5, ask: 1.6, size: 100 };
/// let bytes = ringbus::client::bytes_of(&q);
/// let back: Quote = ringbus::client::from_bytes(bytes).unwrap();
/// assert_eq!((back.bid, back.ask, back.size), (1.5, 1.6, 100));
/// ```
///
/// # Safety
/// The type must have no padding bytes, no pointers or references, and no
/// invalid bit patterns (no `bool`, `char`, enums or `NonZero*`).
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty)*) => {$(
        // SAFETY: primitive numbers: no padding, every bit pattern valid.
        unsafe impl Pod for $t {}
    )*};
}
pod!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64);

// SAFETY: an array of `Pod` has no padding between elements (its stride is
// the element's size) and every element's bit patterns are valid.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The bytes of `value`, to publish.
pub fn bytes_of<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: `T: Pod` has every byte initialised (no padding), and the
    // slice covers exactly the value, borrowed for the slice's lifetime.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The value whose bytes are `bytes`, or `None` when `bytes` is not
/// exactly `size_of::<T>()` long (a message of another type). The bytes
/// need no alignment.
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds exactly `size_of::<T>()` initialised bytes,
    // `read_unaligned` needs no alignment, and `T: Pod` makes every bit
    // pattern a valid `T`.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_wrong_lengths_are_refused() {
        let v: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, u64::MAX];
        let b = bytes_of(&v);
        assert_eq!(b.len(), 64);
        assert_eq!(from_bytes::<[u64; 8]>(b), Some(v));
        // Unaligned input is fine.
        let mut shifted = [0u8; 65];
        shifted[1..].copy_from_slice(b);
        assert_eq!(from_bytes::<[u64; 8]>(&shifted[1..]), Some(v));
        assert_eq!(from_bytes::<[u64; 8]>(&b[..63]), None);
        assert_eq!(from_bytes::<u32>(b), None);
        assert_eq!(from_bytes::<f64>(&1.5f64.to_le_bytes()), Some(1.5));
    }
}
