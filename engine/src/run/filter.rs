//! `--include` / `--exclude`: which listed files a run takes, decided the way
//! the AWS CLI decides for `aws s3 cp --recursive` / `aws s3 sync`:
//!
//! * every file is taken unless a filter says otherwise;
//! * the filters are evaluated in the order given, and the last one that
//!   matches wins (`--exclude '*' --include '*.ts'` takes only `.ts` files);
//! * a pattern is matched against the file's path relative to its input
//!   (folder, `s3://` prefix, or the name a list file or inventory gives it),
//!   with `/` separators;
//! * patterns are Python `fnmatch` patterns, as the AWS CLI uses: `*` matches
//!   any run of characters *including* `/`, `?` one character, `[seq]` one
//!   character of seq (ranges `a-z` allowed), `[!seq]` one character not in it;
//!   case-sensitive.
//!
//! The matcher is the dozen lines below rather than the `globset` crate:
//! globset's syntax differs from fnmatch where it matters here (`[!…]`
//! versus `[^…]`, `**`, `{a,b}` alternations, unclosed `[`), and matching
//! the AWS CLI exactly is the point; it also keeps the regex engine out of
//! the build.
//!
//! A [`Filter`] counts the files each rule rejected, for the summary.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// One `--include` or `--exclude` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Take matching files.
    Include(String),
    /// Leave matching files out.
    Exclude(String),
}

impl Rule {
    fn pattern(&self) -> &str {
        match self {
            Rule::Include(p) | Rule::Exclude(p) => p,
        }
    }

    /// The rule as the user typed it (`--exclude '*.tmp'`).
    pub fn describe(&self) -> String {
        match self {
            Rule::Include(p) => format!("--include '{p}'"),
            Rule::Exclude(p) => format!("--exclude '{p}'"),
        }
    }
}

/// The rules of a run, in order, with how many files each one left out.
#[derive(Debug, Default)]
pub struct Filter {
    rules: Vec<(Rule, Vec<char>)>,
    rejected: Vec<AtomicU64>,
}

impl Filter {
    /// A filter of `rules`, evaluated in this order (later ones win).
    pub fn new(rules: Vec<Rule>) -> Self {
        let rejected = rules.iter().map(|_| AtomicU64::new(0)).collect();
        let rules = rules.into_iter().map(|r| {
            let chars = r.pattern().chars().collect();
            (r, chars)
        });
        Filter { rules: rules.collect(), rejected }
    }

    /// Whether there are no rules (every file is taken).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The index of the rule that decides `relative`, and whether the file is taken.
    fn decide(&self, relative: &Path) -> (Option<usize>, bool) {
        let text: Vec<char> = relative.to_string_lossy().replace('\\', "/").chars().collect();
        let mut decision = (None, true);
        for (i, (rule, pattern)) in self.rules.iter().enumerate() {
            if fnmatch(pattern, &text) {
                decision = (Some(i), matches!(rule, Rule::Include(_)));
            }
        }
        decision
    }

    /// Whether to take the file at `relative` (its path below its input); a file left
    /// out is counted against the rule that decided it.
    pub fn takes(&self, relative: &Path) -> bool {
        match self.decide(relative) {
            (Some(i), false) => {
                self.rejected[i].fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }

    /// Files left out so far, in all.
    pub fn rejected(&self) -> u64 {
        self.rejected.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Files left out so far, per rule that left any out: (`--exclude 'PATTERN'`, count).
    pub fn reasons(&self) -> Vec<(String, u64)> {
        self.rules
            .iter()
            .zip(&self.rejected)
            .map(|((r, _), n)| (r.describe(), n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Python's `fnmatch.fnmatchcase(text, pattern)`.
pub fn fnmatch(pattern: &[char], text: &[char]) -> bool {
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        // An unclosed `[` is a literal.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The character class starting at `pattern[start]` (a `[`): whether `c` is in it, and the
/// index after its `]`; `None` when the class is not closed.
fn class(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    // A `]` right after `[` or `[!` is a member, not the end.
    let first = i;
    let mut found = false;
    while i < pattern.len() && (pattern[i] != ']' || i == first) {
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            if pattern[i] <= c && c <= pattern[i + 2] {
                found = true;
            }
            i += 3;
        } else {
            found |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((found != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        fnmatch(&pattern.chars().collect::<Vec<_>>(), &text.chars().collect::<Vec<_>>())
    }

    #[test]
    fn fnmatch_as_python() {
        // (pattern, text, python's fnmatch.fnmatchcase)
        let table = [
            ("*", "", true),
            ("*", "a/b/c.ts", true),
            ("*.ts", "seg/0001.ts", true),
            ("*.ts", "seg/0001.ts.bak", false),
            ("seg/*", "seg/a/b.ts", true),
            ("seg/*", "other/seg/a", false),
            ("*/seg/*", "x/seg/a", true),
            ("?.mp4", "a.mp4", true),
            ("?.mp4", "ab.mp4", false),
            ("?", "/", true),
            ("[abc].ts", "b.ts", true),
            ("[abc].ts", "d.ts", false),
            ("[!abc].ts", "d.ts", true),
            ("[!abc].ts", "a.ts", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("[]]", "]", true),
            ("[!]]", "a", true),
            ("[a-]", "-", true),
            ("[", "[", true),
            ("a[b", "a[b", true),
            ("*.TS", "a.ts", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**", "a/b", true),
            ("", "", true),
            ("", "a", false),
        ];
        for (pattern, text, want) in table {
            assert_eq!(m(pattern, text), want, "fnmatch({text:?}, {pattern:?})");
        }
    }

    #[test]
    fn later_rules_win_and_everything_is_taken_by_default() {
        let f = Filter::new(vec![]);
        assert!(f.takes(Path::new("a.ts")));
        let f = Filter::new(vec![Rule::Exclude("*".into()), Rule::Include("*.ts".into())]);
        assert!(f.takes(Path::new("hls/0001.ts")));
        assert!(!f.takes(Path::new("hls/index.m3u8")));
        let f = Filter::new(vec![Rule::Include("*.ts".into()), Rule::Exclude("*".into())]);
        assert!(!f.takes(Path::new("hls/0001.ts")));
        let f = Filter::new(vec![Rule::Exclude("*.tmp".into()), Rule::Exclude("cache/*".into())]);
        for p in ["a.tmp", "cache/x.mp4", "b.mp4", "cache/y.tmp"] {
            f.takes(Path::new(p));
        }
        assert_eq!(f.rejected(), 3);
        assert_eq!(f.reasons(), vec![("--exclude '*.tmp'".to_string(), 1), ("--exclude 'cache/*'".to_string(), 2)]);
    }
}
