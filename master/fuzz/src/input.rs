//! Reading structured values out of fuzz bytes (a hand-rolled `arbitrary`): every read
//! succeeds, returning zeros once the bytes run out, so any input builds some value and a
//! small change of the bytes makes a small change of the value.

/// A cursor over fuzz input.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A number in `0..n` (`n` > 0) from one byte (two when `n` > 256).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        if n <= 256 {
            self.u8() as usize % n
        } else {
            self.u16() as usize % n
        }
    }

    /// One of `items` (not empty).
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    /// One of `items` (not empty).
    pub fn pick_str<'s>(&mut self, items: &[&'s str]) -> &'s str {
        items[self.below(items.len())]
    }

    /// Up to `max` bytes (a length byte, then the bytes).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.remaining());
        let start = self.pos.min(self.data.len());
        self.pos += n;
        &self.data[start..start + n]
    }

    /// Up to `max` bytes as text (lossy UTF-8).
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_as_zeros() {
        let mut b = Bytes::new(&[1, 2]);
        assert_eq!(b.u16(), 0x0201);
        assert!(b.is_empty());
        assert_eq!(b.u64(), 0);
        assert_eq!(b.bytes(10), &[] as &[u8]);
        assert_eq!(b.below(7), 0);
    }

    #[test]
    fn bytes_are_bounded_by_the_input() {
        let mut b = Bytes::new(&[5, b'a', b'b']);
        assert_eq!(b.bytes(10), b"ab");
        assert!(b.is_empty());
    }
}
