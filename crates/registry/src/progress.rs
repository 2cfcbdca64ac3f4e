//! Progress bars for large layers, drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Layers smaller than this finish too fast for a bar to help.
const LARGE: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Bars on stderr for large layers, when stderr is a terminal.
    Terminal,
    Hidden,
}

impl Progress {
    /// `Terminal` when stderr is one, else `Hidden`.
    pub fn for_stderr() -> Progress {
        if std::io::stderr().is_terminal() { Progress::Terminal } else { Progress::Hidden }
    }

    pub fn bar(&self, label: &str, bytes: u64) -> ProgressBar {
        match self {
            Progress::Terminal if bytes >= LARGE => {
                let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                        .expect("a valid template"),
                );
                bar.set_message(label.to_string());
                bar
            }
            _ => ProgressBar::hidden(),
        }
    }
}
