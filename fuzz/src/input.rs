//! Reading a fuzz input as a stream of small decisions.

/// A cursor over the fuzz input. Reads past the end give zeros, so every input is a
/// complete description (short inputs just take the first choice everywhere).
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Whether every byte was read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte, 0 past the end.
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// The next `n` bytes as a little-endian number (`n <= 8`), zeros past the end.
    pub fn le(&mut self, n: usize) -> u64 {
        (0..n.min(8)).fold(0u64, |v, i| v | u64::from(self.u8()) << (8 * i))
    }

    /// The next 2 bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        self.le(2) as u16
    }

    /// The next 4 bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        self.le(4) as u32
    }

    /// The next 8 bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        self.le(8)
    }

    /// Up to `n` of the next bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}
