//! Running fswal's replay to the end while checking what it yields.

use std::fmt::Debug;

use fswal_core::{Issue, Mode, Replay, RequestEvent, SegmentStore, Step, Summary};

/// What one replay yielded.
pub struct Replayed {
    /// Every event of every verified block, in order.
    pub events: Vec<RequestEvent>,
    /// Every issue, in order.
    pub issues: Vec<Issue>,
    /// The final summary.
    pub summary: Summary,
}

impl Replayed {
    /// The ids of [`Replayed::events`].
    #[must_use]
    pub fn ids(&self) -> Vec<u64> {
        self.events.iter().map(RequestEvent::event_id).collect()
    }
}

/// Replays `store` in `mode` to the end and checks, as it goes, what holds for any
/// input in either mode: replay never fails on a healthy device (damage is a step, not
/// an error), ends within `steps_max` steps, every block it yields holds at least one
/// event, every event it yields is valid, the ids strictly increase over the whole
/// replay, strict mode stops at its first issue, and the summary counts what was
/// yielded. Panics, naming `what`, when one does not hold.
pub fn replay_checked<S>(store: S, mode: Mode, steps_max: u64, what: &str) -> Replayed
where
    S: SegmentStore,
    S::Error: Debug,
{
    let mut replay = Replay::new(store, mode);
    let mut events: Vec<RequestEvent> = Vec::new();
    let mut issues: Vec<Issue> = Vec::new();
    let mut steps = 0u64;
    loop {
        let step = match replay.step() {
            Ok(Some(step)) => step,
            Ok(None) => break,
            Err(e) => panic!(
                "{what}: {mode:?} replay failed instead of reporting damage: {e:?} \
                 (after {} events, issues {issues:?})",
                events.len()
            ),
        };
        steps += 1;
        assert!(
            steps <= steps_max,
            "{what}: {mode:?} replay takes more than {steps_max} steps (issues so far {issues:?})"
        );
        assert!(
            !(mode == Mode::Strict && !issues.is_empty()),
            "{what}: strict replay went on after its first issue {:?}",
            issues[0]
        );
        match step {
            Step::Issue(issue) => issues.push(issue),
            Step::Block(view) => {
                assert!(
                    !view.events.is_empty(),
                    "{what}: {mode:?} replay yielded an empty block (segment {}, slot {})",
                    view.segment,
                    view.slot
                );
                for e in view.events {
                    if let Err(defect) = e.check() {
                        panic!(
                            "{what}: {mode:?} replay yielded an invalid event ({defect}) in \
                             segment {} slot {}: {e:?}",
                            view.segment, view.slot
                        );
                    }
                    if let Some(prev) = events.last() {
                        assert!(
                            e.event_id() > prev.event_id(),
                            "{what}: {mode:?} replay yielded id {} after id {} (segment {}, slot {})",
                            e.event_id(),
                            prev.event_id(),
                            view.segment,
                            view.slot
                        );
                    }
                    events.push(*e);
                }
            }
            // A segment starting (and any later kind of step) holds no events.
            _ => {}
        }
    }
    let summary = *replay.summary();
    let ids = || events.iter().map(RequestEvent::event_id);
    assert!(
        summary.events == events.len() as u64
            && summary.first_event_id == ids().next()
            && summary.last_event_id == ids().next_back()
            && summary.issues == issues.len() as u64
            && summary.first_issue == issues.first().copied(),
        "{what}: {mode:?} summary {summary:?} does not count what replay yielded \
         ({} events, ids {:?}..={:?}, issues {issues:?})",
        events.len(),
        ids().next(),
        ids().next_back()
    );
    Replayed {
        events,
        issues,
        summary,
    }
}
