//! Text for language models: words, a vocabulary of the most frequent ones, and the batches of
//! truncated backpropagation through time (Zaremba et al.'s PTB reader, which the paper's LSTM
//! model follows).

use std::collections::HashMap;

/// The word of every out-of-vocabulary token.
pub const UNKNOWN: &str = "<unk>";
/// The word that ends every non-empty line.
pub const END_OF_LINE: &str = "<eos>";

/// The tokens of `text`: lowercase words (letters, digits and inner apostrophes, as in
/// "o'er" or "'tis"), each other visible character a token of its own, and [`END_OF_LINE`]
/// after each line that has a token.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let before = out.len();
        let mut word = String::new();
        for c in line.chars() {
            if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
                word.extend(c.to_lowercase());
                continue;
            }
            flush_word(&mut word, &mut out);
            if c == '\'' {
                // A leading apostrophe belongs to the word it starts ("'tis").
                word.push(c);
            } else if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
        flush_word(&mut word, &mut out);
        if out.len() > before {
            out.push(END_OF_LINE.to_string());
        }
    }
    out
}

/// Ends the word being read: a trailing apostrophe is a token of its own (closing quote).
fn flush_word(word: &mut String, out: &mut Vec<String>) {
    let trailing = word.ends_with('\'') && word.len() > 1;
    if trailing {
        word.pop();
    }
    if word == "'" {
        out.push(std::mem::take(word));
        return;
    }
    if !word.is_empty() {
        out.push(std::mem::take(word));
    }
    if trailing {
        out.push("'".to_string());
    }
}

/// Word ids: [`UNKNOWN`] is 0, [`END_OF_LINE`] 1, then words by decreasing frequency (ties by
/// the word itself, so the ids do not depend on hashing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    words: Vec<String>,
    ids: HashMap<String, i32>,
}

impl Vocabulary {
    /// The `size` most frequent tokens of `tokens` (counting [`UNKNOWN`] and [`END_OF_LINE`]);
    /// `size` is at least 2.
    pub fn most_frequent<'a>(tokens: impl IntoIterator<Item = &'a String>, size: usize) -> Self {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in tokens {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        counts.remove(UNKNOWN);
        counts.remove(END_OF_LINE);
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut words = vec![UNKNOWN.to_string(), END_OF_LINE.to_string()];
        words.extend(
            ranked
                .into_iter()
                .take(size.saturating_sub(2))
                .map(|(w, _)| w.to_string()),
        );
        let ids = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as i32))
            .collect();
        Vocabulary { words, ids }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`, [`UNKNOWN`]'s when it is not in the vocabulary.
    pub fn id(&self, word: &str) -> i32 {
        self.ids.get(word).copied().unwrap_or(0)
    }

    /// The word of `id`, `None` when out of range.
    pub fn word(&self, id: i32) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.words.get(i))
            .map(String::as_str)
    }

    /// The ids of `tokens`.
    pub fn encode<'a>(&self, tokens: impl IntoIterator<Item = &'a String>) -> Vec<i32> {
        tokens.into_iter().map(|t| self.id(t)).collect()
    }

    /// `ids` as text: words separated by spaces, a new line for each [`END_OF_LINE`].
    pub fn decode(&self, ids: &[i32]) -> String {
        let mut text = String::new();
        for &id in ids {
            match self.word(id).unwrap_or(UNKNOWN) {
                END_OF_LINE => text.push('\n'),
                w => {
                    if !(text.is_empty() || text.ends_with('\n')) {
                        text.push(' ');
                    }
                    text.push_str(w);
                }
            }
        }
        text
    }
}

/// Truncated-BPTT batches of a token stream: the stream is cut into `batch` contiguous rows;
/// batch `k` holds columns `k*steps .. (k+1)*steps` of every row as inputs and the next token
/// of each as targets. Both are row-major `[batch, steps]`. Empty when the stream is too short
/// for one batch (or `batch` or `steps` is 0).
pub fn lm_batches(ids: &[i32], batch: usize, steps: usize) -> Vec<(Vec<i32>, Vec<i32>)> {
    if batch == 0 || steps == 0 {
        return Vec::new();
    }
    let row_len = ids.len() / batch;
    if row_len < steps + 1 {
        return Vec::new();
    }
    let count = (row_len - 1) / steps;
    (0..count)
        .map(|k| {
            let mut x = Vec::with_capacity(batch * steps);
            let mut y = Vec::with_capacity(batch * steps);
            for r in 0..batch {
                let start = r * row_len + k * steps;
                x.extend_from_slice(&ids[start..start + steps]);
                y.extend_from_slice(&ids[start + 1..start + steps + 1]);
            }
            (x, y)
        })
        .collect()
}
