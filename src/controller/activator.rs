//! Wakes the loop before its next periodic pass: a changed key, and later an HTTP trigger or a
//! database notification. Activations take no input (the pass always looks at everything) and
//! coalesce: any number of them during a pass schedule exactly one more pass.

use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug, Clone, Default)]
pub struct Activator {
    notify: Arc<Notify>,
}

impl Activator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a pass as soon as possible.
    pub fn activate(&self) {
        // `notify_one` stores a permit when nobody waits: a trigger during a pass is not lost,
        // and further triggers add nothing to it.
        self.notify.notify_one();
    }

    pub async fn activated(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn triggers_during_a_pass_coalesce_into_one() {
        let a = Activator::new();
        for _ in 0..5 {
            a.activate();
        }
        // One stored permit: the first wait returns at once, the second does not.
        tokio::time::timeout(std::time::Duration::from_secs(1), a.activated())
            .await
            .expect("one pending activation");
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(60), a.activated())
                .await
                .is_err(),
            "the five triggers coalesced"
        );
    }
}
