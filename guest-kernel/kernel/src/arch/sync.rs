//! A spinlock that masks interrupts while held, so interrupt handlers can share data with the
//! rest of the kernel without deadlocking on one CPU.

use crate::arch::mode;
use core::ops::{Deref, DerefMut};
use spinning_top::Spinlock;
use spinning_top::guard::SpinlockGuard;

/// An interrupt-safe spinlock.
pub struct IrqMutex<T> {
    inner: Spinlock<T>,
}

/// Holds an [`IrqMutex`]; dropping it unlocks and restores the interrupt state.
pub struct IrqGuard<'a, T> {
    guard: Option<SpinlockGuard<'a, T>>,
    irq_was_enabled: bool,
}

impl<T> IrqMutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self { inner: Spinlock::new(value) }
    }

    /// Masks interrupts and takes the lock.
    pub fn lock(&self) -> IrqGuard<'_, T> {
        let irq_was_enabled = mode::irq_save();
        IrqGuard { guard: Some(self.inner.lock()), irq_was_enabled }
    }

    /// Takes the lock if it is free (for fault paths that must not deadlock).
    pub fn try_lock(&self) -> Option<IrqGuard<'_, T>> {
        let irq_was_enabled = mode::irq_save();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqGuard { guard: Some(guard), irq_was_enabled }),
            None => {
                mode::irq_restore(irq_was_enabled);
                None
            }
        }
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard is present until drop")
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard is present until drop")
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        self.guard.take();
        mode::irq_restore(self.irq_was_enabled);
    }
}
