//! Line diffs, for showing what a policy change does to the file: a draft against the active
//! version, or each version against the one before it.
//!
//! A longest-common-subsequence diff over lines. Policy files are short (tens to hundreds of
//! lines), so the quadratic table is cheap; inputs past [`MAX_LINES`] lines are compared as a
//! whole (every old line removed, every new one added) rather than risking a large table.

use serde::Serialize;

/// Past this many lines on either side, no line-by-line alignment is attempted.
pub const MAX_LINES: usize = 2_000;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", content = "line", rename_all = "lowercase")]
pub enum Line {
    /// In both.
    Same(String),
    /// Only in the old text.
    Removed(String),
    /// Only in the new text.
    Added(String),
}

/// The lines of `old` and `new`, aligned: unchanged lines once, removals before additions.
pub fn lines(old: &str, new: &str) -> Vec<Line> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return a
            .iter()
            .map(|l| Line::Removed((*l).to_string()))
            .chain(b.iter().map(|l| Line::Added((*l).to_string())))
            .collect();
    }
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(Line::Same(a[i].to_string()));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(Line::Removed(a[i].to_string()));
            i += 1;
        } else {
            out.push(Line::Added(b[j].to_string()));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed((*l).to_string())));
    out.extend(b[j..].iter().map(|l| Line::Added((*l).to_string())));
    out
}

/// Whether a diff changes anything.
pub fn changes(diff: &[Line]) -> bool {
    diff.iter().any(|l| !matches!(l, Line::Same(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(d: &[Line]) -> String {
        d.iter()
            .map(|l| match l {
                Line::Same(s) => format!(" {s}"),
                Line::Removed(s) => format!("-{s}"),
                Line::Added(s) => format!("+{s}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_changed_threshold_is_one_line_out_one_in() {
        let old = "[[rule]]\nid = \"small\"\namount_below = \"100\"\noutcome = \"allow\"";
        let new = "[[rule]]\nid = \"small\"\namount_below = \"250\"\noutcome = \"allow\"";
        assert_eq!(
            render(&lines(old, new)),
            " [[rule]]\n id = \"small\"\n-amount_below = \"100\"\n+amount_below = \"250\"\n outcome = \"allow\""
        );
    }

    #[test]
    fn identical_texts_have_no_changes_and_empty_sides_are_all_added_or_removed() {
        let text = "a\nb\nc";
        assert!(!changes(&lines(text, text)));
        assert_eq!(render(&lines("", "x\ny")), "+x\n+y");
        assert_eq!(render(&lines("x\ny", "")), "-x\n-y");
    }

    #[test]
    fn a_moved_rule_shows_as_removed_and_added() {
        let old = "A\nB\nC";
        let new = "B\nC\nA";
        let d = lines(old, new);
        assert_eq!(render(&d), "-A\n B\n C\n+A");
    }

    fn sides(d: &[Line]) -> (Vec<String>, Vec<String>) {
        let mut old = Vec::new();
        let mut new = Vec::new();
        for l in d {
            match l {
                Line::Same(s) => {
                    old.push(s.clone());
                    new.push(s.clone());
                }
                Line::Removed(s) => old.push(s.clone()),
                Line::Added(s) => new.push(s.clone()),
            }
        }
        (old, new)
    }

    proptest::proptest! {
        #[test]
        fn any_diff_replays_to_both_sides(
            a in proptest::collection::vec("[abc]", 0..12),
            b in proptest::collection::vec("[abc]", 0..12),
        ) {
            let d = lines(&a.join("\n"), &b.join("\n"));
            let (old, new) = sides(&d);
            proptest::prop_assert_eq!(old, a.clone());
            proptest::prop_assert_eq!(new, b.clone());
            proptest::prop_assert_eq!(changes(&d), a != b);
        }
    }

    #[test]
    fn the_diff_replays_to_both_sides() {
        let old = "1\n2\n3\n4\n5\n6";
        let new = "0\n2\n3\nx\n5\n6\n7";
        let d = lines(old, new);
        let back_old: Vec<&str> = d
            .iter()
            .filter_map(|l| match l {
                Line::Same(s) | Line::Removed(s) => Some(s.as_str()),
                Line::Added(_) => None,
            })
            .collect();
        let back_new: Vec<&str> = d
            .iter()
            .filter_map(|l| match l {
                Line::Same(s) | Line::Added(s) => Some(s.as_str()),
                Line::Removed(_) => None,
            })
            .collect();
        assert_eq!(back_old.join("\n"), old);
        assert_eq!(back_new.join("\n"), new);
        assert_eq!(d.iter().filter(|l| matches!(l, Line::Same(_))).count(), 4);
    }
}
