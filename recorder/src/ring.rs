//! A bounded single-producer single-consumer ring: the hand-off between the engine
//! thread and the I/O thread.
//!
//! The producer writes a slot, then publishes it by advancing `head` (release); the
//! consumer sees it by reading `head` (acquire), reads the slot, then frees it by
//! advancing `tail` (release), which the producer reads (acquire) before reusing the
//! slot. Each side caches the other's index and rereads it only when the cached value
//! says the ring looks full (producer) or empty (consumer), so in the steady state a
//! push or a pop touches no cache line the other side writes. Neither side ever blocks,
//! allocates or makes a system call.
//!
//! [`Producer`] and [`Consumer`] are the only handles, neither can be cloned, and each
//! is `Send`: the single-producer single-consumer discipline the `unsafe` relies on is
//! enforced by the types.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps an atomic on its own pair of cache lines (adjacent-line prefetch pairs them on
/// x86), so that the producer's and the consumer's indices never share one.
#[repr(align(128))]
struct Padded(AtomicU64);

struct Ring<T> {
    slots: Box<[UnsafeCell<T>]>,
    mask: u64,
    /// The next position the producer writes; only the producer stores it.
    head: Padded,
    /// The next position the consumer reads; only the consumer stores it.
    tail: Padded,
}

// SAFETY: a slot is written only by the producer, and only while it is free (the
// consumer has read it: `tail` passed it); it is read only by the consumer, and only
// once published (`head` passed it). The release/acquire pairs on `head` and `tail`
// order those accesses, so no slot is ever accessed by both threads at once.
unsafe impl<T: Send> Sync for Ring<T> {}

/// The writing end.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    head: u64,
    /// The consumer's `tail` as last read: the ring has at least this much room.
    tail_cache: u64,
}

/// The reading end.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    tail: u64,
    /// The producer's `head` as last read: at least this much is readable.
    head_cache: u64,
}

/// A ring of `capacity` slots (rounded up to a power of two, at least 2), filled with
/// `fill`, split into its two ends.
#[must_use]
pub fn ring<T: Copy + Send>(capacity: usize, fill: T) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots: Box<[UnsafeCell<T>]> = (0..capacity).map(|_| UnsafeCell::new(fill)).collect();
    let ring = Arc::new(Ring {
        slots,
        mask: capacity as u64 - 1,
        head: Padded(AtomicU64::new(0)),
        tail: Padded(AtomicU64::new(0)),
    });
    (
        Producer {
            ring: Arc::clone(&ring),
            head: 0,
            tail_cache: 0,
        },
        Consumer {
            ring,
            tail: 0,
            head_cache: 0,
        },
    )
}

impl<T: Copy> Producer<T> {
    /// Slots in the ring.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }

    /// Adds `value`, or gives it back when the ring is full.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), T> {
        let capacity = self.ring.mask + 1;
        if self.head - self.tail_cache == capacity {
            self.tail_cache = self.ring.tail.0.load(Ordering::Acquire);
            if self.head - self.tail_cache == capacity {
                return Err(value);
            }
        }
        // The index is masked to the slot count, which is a usize.
        #[allow(clippy::cast_possible_truncation)]
        let slot = &self.ring.slots[(self.head & self.ring.mask) as usize];
        // SAFETY: this slot is free: `head - tail < capacity`, so the consumer read it
        // (or it was never written), and it will not read it again before `head`, stored
        // below with release, publishes the new value. Only this producer writes slots.
        unsafe { *slot.get() = value };
        self.head += 1;
        self.ring.head.0.store(self.head, Ordering::Release);
        Ok(())
    }

    /// Values pushed and not yet popped, as of the last look at the consumer.
    #[must_use]
    pub fn len(&self) -> usize {
        let tail = self.ring.tail.0.load(Ordering::Acquire);
        usize::try_from(self.head - tail).unwrap_or(usize::MAX)
    }

    /// Whether the consumer has popped everything pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Copy> Consumer<T> {
    /// Takes the oldest value, if any.
    #[inline]
    pub fn try_pop(&mut self) -> Option<T> {
        if self.tail == self.head_cache {
            self.head_cache = self.ring.head.0.load(Ordering::Acquire);
            if self.tail == self.head_cache {
                return None;
            }
        }
        #[allow(clippy::cast_possible_truncation)]
        let slot = &self.ring.slots[(self.tail & self.ring.mask) as usize];
        // SAFETY: this slot was published (`tail < head`, read with acquire after the
        // producer's release store), and the producer will not write it again before
        // `tail`, stored below with release, frees it. Only this consumer reads slots.
        let value = unsafe { *slot.get() };
        self.tail += 1;
        self.ring.tail.0.store(self.tail, Ordering::Release);
        Some(value)
    }

    /// Takes up to `out.len()` of the oldest values into `out`, in order, and returns
    /// how many: one or two block copies and one release store for the whole run, where
    /// popping one by one would make a store per value.
    pub fn pop_into(&mut self, out: &mut [T]) -> usize {
        if self.tail == self.head_cache {
            self.head_cache = self.ring.head.0.load(Ordering::Acquire);
        }
        let available = usize::try_from(self.head_cache - self.tail).unwrap_or(usize::MAX);
        let n = available.min(out.len());
        if n == 0 {
            return 0;
        }
        let capacity = self.ring.slots.len();
        // The index is masked to the slot count, which is a usize.
        #[allow(clippy::cast_possible_truncation)]
        let start = (self.tail & self.ring.mask) as usize;
        // The run may wrap: `first` values up to the end of the slots, the rest from 0.
        let first = n.min(capacity - start);
        let base = self.ring.slots.as_ptr().cast::<T>();
        // SAFETY: the `n` slots from `tail` were published (`tail + n <= head`, read with
        // acquire after the producer's release store) and the producer will not write
        // them again before `tail`, stored below with release, frees them; only this
        // consumer reads slots. `UnsafeCell<T>` has the layout of `T`, so the slots are
        // `capacity` contiguous `T`s; `start + first <= capacity` and
        // `n - first <= start < capacity` keep both copies inside them, and `out` (a
        // distinct, exclusively borrowed buffer) holds `n >= first` values.
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(base, out.as_mut_ptr().add(first), n - first);
        }
        self.tail += n as u64;
        self.ring.tail.0.store(self.tail, Ordering::Release);
        n
    }

    /// Values waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        let head = self.ring.head.0.load(Ordering::Acquire);
        usize::try_from(head - self.tail).unwrap_or(usize::MAX)
    }

    /// Whether nothing is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the producer end was dropped (nothing more will come once drained).
    #[must_use]
    pub fn producer_gone(&self) -> bool {
        Arc::strong_count(&self.ring) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_drains_in_order() {
        let (mut p, mut c) = ring::<u64>(4, 0);
        assert_eq!(p.capacity(), 4);
        for i in 0..4 {
            p.try_push(i).unwrap();
        }
        assert_eq!(p.try_push(9), Err(9));
        assert_eq!(c.len(), 4);
        for i in 0..4 {
            assert_eq!(c.try_pop(), Some(i));
        }
        assert_eq!(c.try_pop(), None);
        p.try_push(5).unwrap();
        assert_eq!(c.try_pop(), Some(5));
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two() {
        assert_eq!(ring::<u8>(0, 0).0.capacity(), 2);
        assert_eq!(ring::<u8>(1000, 0).0.capacity(), 1024);
    }

    #[test]
    fn two_threads_move_every_value_once_in_order() {
        let (mut p, mut c) = ring::<u64>(64, 0);
        // Enough under Miri to wrap the ring many times with the producer and the
        // consumer interleaved at random points; far more natively, to hit races.
        const N: u64 = if cfg!(miri) { 1_000 } else { 2_000_000 };
        let producer = std::thread::spawn(move || {
            let mut full = 0u64;
            for i in 1..=N {
                let mut v = i;
                while let Err(back) = p.try_push(v) {
                    v = back;
                    full += 1;
                    std::hint::spin_loop();
                }
            }
            full
        });
        let mut expected = 1u64;
        while expected <= N {
            match c.try_pop() {
                Some(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        producer.join().unwrap();
        assert!(c.try_pop().is_none());
        assert!(c.producer_gone());
    }

    #[test]
    fn pop_into_takes_runs_across_the_wrap() {
        let (mut p, mut c) = ring::<u64>(8, 0);
        let mut out = [0u64; 5];
        assert_eq!(c.pop_into(&mut out), 0);
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        // Positions move round the ring many times, so runs start everywhere and wrap.
        for round in 0..50u8 {
            for _ in 0..(1 + round % 8) {
                if p.try_push(next_in).is_ok() {
                    next_in += 1;
                }
            }
            let n = c.pop_into(&mut out[..1 + (round % 5) as usize]);
            for &v in &out[..n] {
                assert_eq!(v, next_out);
                next_out += 1;
            }
        }
        while let Some(v) = c.try_pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
    }

    #[test]
    fn two_threads_move_every_value_once_in_order_in_runs() {
        let (mut p, mut c) = ring::<u64>(64, 0);
        const N: u64 = if cfg!(miri) { 1_000 } else { 1_000_000 };
        let producer = std::thread::spawn(move || {
            for i in 1..=N {
                let mut v = i;
                while let Err(back) = p.try_push(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut out = [0u64; 48];
        let mut expected = 1u64;
        while expected <= N {
            let n = c.pop_into(&mut out);
            for &v in &out[..n] {
                assert_eq!(v, expected);
                expected += 1;
            }
            if n == 0 {
                std::hint::spin_loop();
            }
        }
        producer.join().unwrap();
        assert_eq!(c.pop_into(&mut out), 0);
    }
}
