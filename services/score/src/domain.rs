//! A player's statistics from their results, without I/O.

/// One finished game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Result {
    pub date: jiff::civil::Date,
    pub won: bool,
    pub attempts: u32,
}

/// What the statistics say of a player.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub games: u32,
    pub wins: u32,
    /// Attempts over every game: seed 002's "tries", divided by the words found.
    pub tries: u32,
    /// Won days in a row up to the last game played (0 after a loss or a
    /// skipped day).
    pub current_streak: u32,
    pub best_streak: u32,
    /// Wins in 1, 2, ... 6 attempts.
    pub distribution: [u32; 6],
}

impl Stats {
    /// From `results` in any order.
    pub fn of(results: &[Result]) -> Self {
        let mut sorted = results.to_vec();
        sorted.sort_by_key(|r| r.date);
        let mut stats = Stats::default();
        let mut previous: Option<jiff::civil::Date> = None;
        let mut run = 0;
        for result in &sorted {
            stats.games += 1;
            stats.tries += result.attempts;
            let consecutive = previous.is_some_and(|p| p.tomorrow().ok() == Some(result.date));
            if result.won {
                stats.wins += 1;
                if let Some(slot) = stats.distribution.get_mut(result.attempts as usize - 1) {
                    *slot += 1;
                }
                run = if consecutive { run + 1 } else { 1 };
            } else {
                run = 0;
            }
            stats.best_streak = stats.best_streak.max(run);
            previous = Some(result.date);
        }
        stats.current_streak = run;
        stats
    }

    /// Attempts per word found (seed 002's score); none without a win.
    pub fn tries_per_word(&self) -> Option<f64> {
        (self.wins > 0).then(|| f64::from(self.tries) / f64::from(self.wins))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str, won: bool, attempts: u32) -> Result {
        Result {
            date: d.parse().unwrap(),
            won,
            attempts,
        }
    }

    #[test]
    fn streaks_count_won_days_in_a_row() {
        let results = [
            day("2026-11-29", true, 3),
            day("2026-11-30", true, 4),
            day("2026-12-01", true, 2),
        ];
        let stats = Stats::of(&results);
        assert_eq!((stats.current_streak, stats.best_streak), (3, 3));
        assert_eq!(stats.distribution, [0, 1, 1, 1, 0, 0]);
        assert_eq!(stats.tries_per_word(), Some(3.0));
    }

    #[test]
    fn a_loss_or_a_skipped_day_ends_a_streak() {
        let lost = Stats::of(&[
            day("2026-11-28", true, 1),
            day("2026-11-29", true, 1),
            day("2026-11-30", false, 6),
        ]);
        assert_eq!((lost.current_streak, lost.best_streak), (0, 2));
        assert_eq!(lost.tries_per_word(), Some(4.0));
        let skipped = Stats::of(&[
            day("2026-12-02", true, 2),
            day("2026-11-29", true, 1),
            day("2026-11-30", true, 5),
        ]);
        assert_eq!(
            (skipped.current_streak, skipped.best_streak),
            (1, 2),
            "out of order too"
        );
        let month = Stats::of(&[day("2026-11-30", true, 2), day("2026-12-01", true, 2)]);
        assert_eq!(month.current_streak, 2, "across the end of a month");
        assert_eq!(Stats::of(&[]).tries_per_word(), None);
    }
}
