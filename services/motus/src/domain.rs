//! The game's rules, without I/O: what a guess must be, how each letter is
//! coloured, when a game ends, and which word a day has.

use std::collections::HashMap;

/// Attempts in a game.
pub const MAX_ATTEMPTS: usize = 6;

/// How a letter of a guess compares with the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// The right letter in the right place (the red square).
    Correct,
    /// In the answer, elsewhere (the yellow circle).
    Present,
    Absent,
}

/// The letters `normalise` reads, as the inside of a regular expression's
/// character class.
pub const LETTER_CLASS: &str = "A-Za-zàâäáãåçéèêëîïíìôöóòõùûüúÿýñœæÀÂÄÁÃÅÇÉÈÊËÎÏÍÌÔÖÓÒÕÙÛÜÚŸÝÑŒÆ";

/// Upper case A-Z with accents stripped (`é` → `E`, `œ` → `OE`); `None` if
/// something else remains.
pub fn normalise(word: &str) -> Option<String> {
    let mut out = String::with_capacity(word.len());
    for c in word.trim().chars() {
        let plain = match c.to_lowercase().next().unwrap_or(c) {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => "a",
            'ç' => "c",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'î' | 'ï' | 'í' | 'ì' => "i",
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => "o",
            'ù' | 'û' | 'ü' | 'ú' => "u",
            'ÿ' | 'ý' => "y",
            'ñ' => "n",
            'œ' => "oe",
            'æ' => "ae",
            c if c.is_ascii_alphabetic() => {
                out.push(c.to_ascii_uppercase());
                continue;
            }
            _ => return None,
        };
        out.push_str(&plain.to_ascii_uppercase());
    }
    (!out.is_empty()).then_some(out)
}

/// Marks each letter of `guess` against `answer` (same length, upper case):
/// exact matches first, then a letter is `present` only while copies of it
/// in the answer remain unmatched.
pub fn marks(guess: &str, answer: &str) -> Vec<Mark> {
    let guess = guess.as_bytes();
    let answer = answer.as_bytes();
    let mut marks = vec![Mark::Absent; guess.len()];
    let mut unmatched: HashMap<u8, usize> = HashMap::new();
    for (i, &letter) in answer.iter().enumerate() {
        if guess.get(i) == Some(&letter) {
            marks[i] = Mark::Correct;
        } else {
            *unmatched.entry(letter).or_default() += 1;
        }
    }
    for (i, letter) in guess.iter().enumerate() {
        if marks[i] == Mark::Correct {
            continue;
        }
        if let Some(left) = unmatched.get_mut(letter).filter(|n| **n > 0) {
            *left -= 1;
            marks[i] = Mark::Present;
        }
    }
    marks
}

/// Why a guess does not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotAWord,
    Length(usize),
    FirstLetter(char),
    Unknown,
}

impl Refusal {
    /// A reason a player can read.
    pub fn detail(self) -> String {
        match self {
            Refusal::NotAWord => "a guess is made of letters only".to_owned(),
            Refusal::Length(n) => format!("the word has {n} letters"),
            Refusal::FirstLetter(c) => format!("the word starts with {c}"),
            Refusal::Unknown => "this word is not in the list".to_owned(),
        }
    }

    /// A stable label, for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotAWord => "not_a_word",
            Refusal::Length(_) => "length",
            Refusal::FirstLetter(_) => "first_letter",
            Refusal::Unknown => "unknown",
        }
    }
}

/// The guess, normalised, if it may be played against `answer`.
pub fn check(raw: &str, answer: &str, accepted: impl Fn(&str) -> bool) -> Result<String, Refusal> {
    let guess = normalise(raw).ok_or(Refusal::NotAWord)?;
    if guess.len() != answer.len() {
        return Err(Refusal::Length(answer.len()));
    }
    let first = answer.as_bytes()[0];
    if guess.as_bytes()[0] != first {
        return Err(Refusal::FirstLetter(char::from(first)));
    }
    if !accepted(&guess) {
        return Err(Refusal::Unknown);
    }
    Ok(guess)
}

/// Where a game is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Playing,
    Won,
    Lost,
}

/// The status after `guesses` against `answer`.
pub fn status(guesses: &[String], answer: &str) -> Status {
    if guesses.iter().any(|g| g == answer) {
        Status::Won
    } else if guesses.len() >= MAX_ATTEMPTS {
        Status::Lost
    } else {
        Status::Playing
    }
}

/// The answer list in the order the days draw it: a permutation fixed by
/// `seed`, so every instance draws the same.
pub fn shuffled(answers: &[&'static str], seed: u64) -> Vec<&'static str> {
    let mut order = answers.to_vec();
    let mut state = seed;
    // SplitMix64 drives a Fisher-Yates shuffle.
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The word drawn for `day` (days since 1970-01-01 in the game's zone).
pub fn word_of(order: &[&'static str], day: i64) -> &'static str {
    order[day.rem_euclid(order.len() as i64) as usize]
}

/// The calendar day of `now` in `zone`, and its number since 1970-01-01.
pub fn today(now: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> (jiff::civil::Date, i64) {
    let date = now.to_zoned(zone.clone()).date();
    let epoch = jiff::civil::date(1970, 1, 1);
    // The difference of two dates is in days (no larger unit).
    (date, i64::from((date - epoch).get_days()))
}

#[cfg(test)]
mod tests {
    use super::Mark::{Absent as A, Correct as C, Present as P};
    use super::*;

    #[test]
    fn letters_are_marked_in_two_passes() {
        assert_eq!(marks("MAISON", "MAISON"), [C; 6]);
        assert_eq!(marks("BUTTER", "CLOUDS"), [A, P, A, A, A, A]);
        // A repeated guess letter is present only as often as it is unmatched.
        assert_eq!(marks("ALLEES", "ANNEAU"), [C, A, A, C, A, A]);
        assert_eq!(marks("EEEEEE", "ABCDEF"), [A, A, A, A, C, A]);
        assert_eq!(marks("SALLES", "LASSES"), [P, C, P, A, C, C]);
        // The exact match wins the letter over an earlier misplaced copy.
        assert_eq!(marks("TATOUE", "BATEAU"), [A, C, C, A, P, P]);
        assert_eq!(marks("ZZZZZZ", "ABCDEF"), [A; 6]);
    }

    #[test]
    fn no_letter_is_marked_more_often_than_the_answer_has_it() {
        use rand::RngExt as _;
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let len = rng.random_range(6..=9);
            let word = |rng: &mut rand::rngs::ThreadRng| -> String {
                (0..len)
                    .map(|_| char::from(b'A' + rng.random_range(0..4)))
                    .collect()
            };
            let (guess, answer) = (word(&mut rng), word(&mut rng));
            let marked = marks(&guess, &answer);
            for letter in b'A'..=b'D' {
                let in_answer = answer.bytes().filter(|&b| b == letter).count();
                let credited = guess
                    .bytes()
                    .zip(&marked)
                    .filter(|(b, m)| *b == letter && **m != Mark::Absent)
                    .count();
                assert!(credited <= in_answer, "{guess} vs {answer}: {marked:?}");
                let exact = guess
                    .bytes()
                    .zip(answer.bytes())
                    .filter(|(g, a)| *g == letter && g == a)
                    .count();
                let guessed = guess.bytes().filter(|&b| b == letter).count();
                assert_eq!(credited, in_answer.min(guessed), "{guess} vs {answer}");
                assert!(credited >= exact);
            }
        }
    }

    #[test]
    fn guesses_are_normalised_and_checked_in_order() {
        let known = |w: &str| w == "MAISON" || w == "MOUTON";
        assert_eq!(check(" mouton ", "MAISON", known), Ok("MOUTON".to_owned()));
        assert_eq!(normalise("Œuvrée").as_deref(), Some("OEUVREE"));
        assert_eq!(check("mai-son", "MAISON", known), Err(Refusal::NotAWord));
        assert_eq!(check("MAISONS", "MAISON", known), Err(Refusal::Length(6)));
        assert_eq!(
            check("BAISON", "MAISON", known),
            Err(Refusal::FirstLetter('M'))
        );
        assert_eq!(check("MAISOM", "MAISON", known), Err(Refusal::Unknown));
    }

    #[test]
    fn the_letter_class_is_what_normalise_reads() {
        let accented = LETTER_CLASS.trim_start_matches("A-Za-z");
        for c in accented.chars() {
            assert!(normalise(&c.to_string()).is_some(), "{c}");
        }
        for c in ['ß', 'ø', 'ð', '×', '1', ' '] {
            assert!(!LETTER_CLASS.contains(c));
            assert!(normalise(&c.to_string()).is_none(), "{c}");
        }
        assert_eq!(
            normalise("\u{3000} Maison\u{2029}\t").as_deref(),
            Some("MAISON")
        );
    }

    #[test]
    fn a_game_ends_on_a_win_or_after_the_sixth_attempt() {
        let guesses = |n: usize| vec!["MOUTON".to_owned(); n];
        assert_eq!(status(&guesses(5), "MAISON"), Status::Playing);
        assert_eq!(status(&guesses(6), "MAISON"), Status::Lost);
        let mut won = guesses(2);
        won.push("MAISON".to_owned());
        assert_eq!(status(&won, "MAISON"), Status::Won);
    }

    #[test]
    fn the_day_rolls_over_at_midnight_in_the_games_zone() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let before: jiff::Timestamp = "2026-06-30T21:59:59Z".parse().unwrap();
        let after: jiff::Timestamp = "2026-06-30T22:00:00Z".parse().unwrap();
        let (d1, n1) = today(before, &paris);
        let (d2, n2) = today(after, &paris);
        assert_eq!(
            (d1.to_string(), d2.to_string()),
            ("2026-06-30".into(), "2026-07-01".into())
        );
        assert_eq!(n2, n1 + 1);
        let (utc, _) = today(after, &jiff::tz::TimeZone::UTC);
        assert_eq!(utc.to_string(), "2026-06-30");
        assert_eq!(
            today(
                "1970-01-01T00:00:00Z".parse().unwrap(),
                &jiff::tz::TimeZone::UTC
            )
            .1,
            0
        );
    }

    #[test]
    fn every_instance_draws_the_same_words() {
        let list = ["ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO"];
        let a = shuffled(&list, 7);
        assert_eq!(a, shuffled(&list, 7));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, list, "a permutation");
        assert_eq!(word_of(&a, 5), word_of(&a, 0));
        assert_eq!(word_of(&a, -1), a[4]);
    }
}
