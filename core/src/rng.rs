//! [`XorShift64`]: the deterministic generator the crash simulator, the fuzzers' seeds
//! and the randomized tests share (feature `testing`; exempt from semver). Not for
//! anything that needs unpredictable numbers.

/// A xorshift64 generator: the same seed gives the same sequence, on every platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator for `seed` (any value: it is spread over the state, and the state is
    /// never zero, which xorshift could not leave).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Fills `buf` with the next values' bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            for (to, from) in chunk.iter_mut().zip(bytes) {
                *to = from;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_depends_only_on_the_seed() {
        let mut a = XorShift64::new(7);
        let mut b = XorShift64::new(7);
        let mut c = XorShift64::new(8);
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_eq!(XorShift64::new(0).below(0), 0);
        assert!((0..1000).all(|_| a.below(10) < 10));
        let mut buf = [0u8; 13];
        XorShift64::new(1).fill(&mut buf);
        assert!(buf.iter().any(|&b| b != 0));
    }
}
