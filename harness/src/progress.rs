//! Progress bars on stderr for long work (`record`, `verify`, `dump` to a file,
//! `salvage`, `crashsim`): drawn only when stderr is a terminal, never with `--json`,
//! and for `dump` only when its output goes elsewhere than the terminal (on the
//! terminal, the events themselves show the progress, and a bar would be drawn over
//! them). Otherwise the bar is hidden and costs next to nothing; callers update it
//! at most once a block or once a segment, never per event.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The most times a second a bar is redrawn: often enough to look alive, rarely enough
/// that drawing costs nothing beside the work.
pub const REDRAWS_PER_S_MAX: u8 = 10;

/// How often a spinner turns by itself, for work that reports no progress while it
/// runs.
pub const SPINNER_TICK: Duration = Duration::from_millis(125);

/// What a command writes its results as, for deciding whether a bar may be drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A report at the end, as text or (with `--json`) as one JSON object.
    Report {
        /// Whether `--json` was given.
        json: bool,
    },
    /// Lines all along on stdout, as `dump` writes its events.
    Stream,
}

/// Whether a progress bar is drawn, given where stderr and stdout go and what the
/// command writes: only on a terminal stderr, never with `--json` (whoever reads the
/// JSON is a program), and for a stream only when stdout is not the terminal too.
#[must_use]
pub fn show_progress(stderr_is_terminal: bool, stdout_is_terminal: bool, output: Output) -> bool {
    match output {
        Output::Report { json } => stderr_is_terminal && !json,
        Output::Stream => stderr_is_terminal && !stdout_is_terminal,
    }
}

/// [`show_progress`] for this process's own stderr and stdout.
#[must_use]
pub fn show_progress_here(output: Output) -> bool {
    show_progress(
        io::stderr().is_terminal(),
        io::stdout().is_terminal(),
        output,
    )
}

/// A progress bar or spinner on stderr, or a hidden one; cleared when dropped, so that
/// a line printed afterwards (a result, an error) starts on a clean line.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar from 0 to `total` counted in `unit` (a plural noun: "events", "segments"),
    /// titled `what`; hidden unless `show`.
    #[must_use]
    pub fn bar(show: bool, what: &str, total: u64, unit: &str) -> Self {
        if !show {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), draw_target())
            .with_style(
                style(&bar_template(unit), ProgressStyle::default_bar()).progress_chars("=> "),
            )
            .with_prefix(what.to_owned());
        Self { bar }
    }

    /// A spinner for work of unknown length, titled `what`, followed by a message
    /// ([`Progress::set_message`]); it turns by itself. Hidden unless `show`.
    #[must_use]
    pub fn spinner(show: bool, what: &str) -> Self {
        if !show {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, draw_target())
            .with_style(style(SPINNER_TEMPLATE, ProgressStyle::default_spinner()))
            .with_prefix(what.to_owned());
        bar.enable_steady_tick(SPINNER_TICK);
        Self { bar }
    }

    /// A bar that draws nothing.
    #[must_use]
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    /// Whether it draws anything.
    #[must_use]
    pub fn is_shown(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Moves the bar to `done` units.
    pub fn set_position(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Sets the text shown after a spinner's title, which starts with its own
    /// separator (": 12 crash points").
    pub fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    /// Runs `f`, which prints to stderr, with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }
}

/// A bar over the segments of a log that a replay walks through, moved when a block of
/// a later segment is verified: once per segment, whatever the number of blocks.
#[derive(Debug)]
pub struct Segments {
    progress: Progress,
    /// The lowest segment index of the log.
    first: u32,
    /// The segment of the last block seen.
    at: Option<u32>,
}

impl Segments {
    /// A bar titled `what` over the segments `range` (lowest and highest index, as
    /// the store lists them; `None`, an empty log: a bar of 0); hidden unless `show`.
    #[must_use]
    pub fn new(show: bool, what: &str, range: Option<(u32, u32)>) -> Self {
        let (first, total) = range.map_or((0, 0), |(first, last)| {
            (first, u64::from(last.saturating_sub(first)) + 1)
        });
        Self {
            progress: Progress::bar(show, what, total, "segments"),
            first,
            at: None,
        }
    }

    /// Notes that a block of segment `segment` was verified: the segments before it,
    /// and it, are reached.
    pub fn block_of(&mut self, segment: u32) {
        if self.at != Some(segment) {
            self.at = Some(segment);
            self.progress
                .set_position(u64::from(segment.saturating_sub(self.first)) + 1);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A bar's template: title, bar, count of `unit`, time spent and left.
fn bar_template(unit: &str) -> String {
    format!(
        "{{prefix}} [{{bar:40}}] {{human_pos}}/{{human_len}} {unit} ({{elapsed}}, about {{eta}} left)"
    )
}

/// A spinner's template: title, message, time spent.
const SPINNER_TEMPLATE: &str = "{spinner} {prefix}{msg} ({elapsed})";

fn draw_target() -> ProgressDrawTarget {
    ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_S_MAX)
}

/// The style of `template`, or `fallback` if the template were refused: the templates
/// here are fixed and valid, but a refusal must not stop the work.
fn style(template: &str, fallback: ProgressStyle) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_on_a_terminal_never_with_json_and_for_a_stream_only_when_redirected() {
        // (stderr is a terminal, stdout is a terminal, output) -> drawn
        let table = [
            (true, true, Output::Report { json: false }, true),
            (true, false, Output::Report { json: false }, true),
            (true, true, Output::Report { json: true }, false),
            (true, false, Output::Report { json: true }, false),
            (false, true, Output::Report { json: false }, false),
            (false, false, Output::Report { json: false }, false),
            (false, true, Output::Report { json: true }, false),
            (false, false, Output::Report { json: true }, false),
            (true, false, Output::Stream, true),
            (true, true, Output::Stream, false),
            (false, false, Output::Stream, false),
            (false, true, Output::Stream, false),
        ];
        for (stderr, stdout, output, drawn) in table {
            assert_eq!(
                show_progress(stderr, stdout, output),
                drawn,
                "stderr terminal {stderr}, stdout terminal {stdout}, {output:?}"
            );
        }
    }

    #[test]
    fn the_templates_are_valid_and_a_hidden_bar_draws_nothing() {
        for template in [bar_template("events").as_str(), SPINNER_TEMPLATE] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
        assert!(bar_template("events").contains("/{human_len} events ("));
        let hidden = Progress::bar(false, "recording", 10, "events");
        assert!(!hidden.is_shown());
        hidden.set_position(5);
        assert!(!Progress::spinner(false, "verifying").is_shown());
        let mut segments = Segments::new(false, "verifying", Some((3, 7)));
        segments.block_of(3);
        segments.block_of(7);
        assert_eq!(segments.progress.bar.position(), 5);
    }
}
