//! The word list behind the `has_profanity(text)` host function of rule scripts.
//!
//! Matching is by whole word, ignoring case, so "Scunthorpe" does not match "cunt" and
//! "classic" does not match "ass". Words are split on anything that is not a letter or digit.
//! The list is configurable ([`RhaiConfig::profanity_words`]); the default is a small English
//! list, enough for the seed's content-moderation example.
//!
//! [`RhaiConfig::profanity_words`]: super::RhaiConfig::profanity_words

use std::collections::HashSet;

const DEFAULT_WORDS: &[&str] = &[
    "asshole",
    "bastard",
    "bitch",
    "bullshit",
    "crap",
    "damn",
    "dick",
    "fuck",
    "fucking",
    "motherfucker",
    "shit",
];

/// A set of words that `has_profanity` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfanityFilter {
    words: HashSet<String>,
}

impl Default for ProfanityFilter {
    fn default() -> Self {
        Self::new(DEFAULT_WORDS)
    }
}

impl ProfanityFilter {
    /// A filter for `words` (compared ignoring case; blank entries are ignored).
    pub fn new<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let words = words
            .into_iter()
            .map(|w| w.as_ref().trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        Self { words }
    }

    /// True when `text` contains one of the words as a whole word.
    pub fn contains_profanity(&self, text: &str) -> bool {
        if self.words.is_empty() {
            return false;
        }
        let mut lowered = String::new();
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .any(|word| {
                // Most words are already lower case: skip the allocation for them.
                if word.chars().any(char::is_uppercase) {
                    lowered.clear();
                    lowered.extend(word.chars().flat_map(char::to_lowercase));
                    self.words.contains(&lowered)
                } else {
                    self.words.contains(word)
                }
            })
    }

    /// The words of the list, lower-cased, in no particular order.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_words_ignoring_case() {
        let filter = ProfanityFilter::default();
        assert!(filter.contains_profanity("well, DAMN it"));
        assert!(filter.contains_profanity("shit!"));
        assert!(!filter.contains_profanity("a classic crapshoot? no: scrapped"));
        assert!(!filter.contains_profanity(""));
    }

    #[test]
    fn custom_list_replaces_the_default() {
        let filter = ProfanityFilter::new(["Heck", " "]);
        assert!(filter.contains_profanity("oh heck"));
        assert!(!filter.contains_profanity("damn"));
    }
}
