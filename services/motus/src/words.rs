//! The word lists, compiled in: the answers the days draw from, and the
//! larger list of accepted guesses. `words/derive.sh` makes them from
//! Debian's dictionaries (see `words/LICENSES.md`).

use std::collections::HashSet;

use crate::config::Lang;
use crate::domain;

const FR_ANSWERS: &str = include_str!("../words/fr/answers.txt");
const FR_GUESSES: &str = include_str!("../words/fr/guesses.txt");
const EN_ANSWERS: &str = include_str!("../words/en/answers.txt");
const EN_GUESSES: &str = include_str!("../words/en/guesses.txt");

/// The words of one language.
pub struct Words {
    /// The answers in the order the days draw them.
    order: Vec<&'static str>,
    guesses: HashSet<&'static str>,
}

impl Words {
    pub fn new(lang: Lang, seed: u64) -> Self {
        let (answers, guesses) = match lang {
            Lang::Fr => (FR_ANSWERS, FR_GUESSES),
            Lang::En => (EN_ANSWERS, EN_GUESSES),
        };
        let answers: Vec<&'static str> = answers.lines().filter(|w| !w.is_empty()).collect();
        Self {
            order: domain::shuffled(&answers, seed),
            guesses: guesses.lines().filter(|w| !w.is_empty()).collect(),
        }
    }

    /// The word drawn for day number `day`.
    pub fn drawn(&self, day: i64) -> &'static str {
        domain::word_of(&self.order, day)
    }

    pub fn accepts(&self, word: &str) -> bool {
        self.guesses.contains(word)
    }

    /// The accepted guesses of `length` letters starting with `first`, sorted.
    pub fn starting(&self, length: usize, first: char) -> Vec<&'static str> {
        let mut words: Vec<&'static str> = self
            .guesses
            .iter()
            .filter(|w| w.len() == length && w.starts_with(first))
            .copied()
            .collect();
        words.sort_unstable();
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_an_accepted_guess_of_six_to_nine_letters() {
        for lang in [Lang::Fr, Lang::En] {
            let words = Words::new(lang, 1);
            assert!(
                words.order.len() > 1000,
                "{lang:?}: {} answers",
                words.order.len()
            );
            for answer in &words.order {
                assert!((6..=9).contains(&answer.len()), "{answer}");
                assert!(answer.bytes().all(|b| b.is_ascii_uppercase()), "{answer}");
                assert!(words.accepts(answer), "{lang:?}: {answer} is not a guess");
            }
        }
    }
}
