//! Kernel command-line parsing.
//!
//! The command line is a list of words separated by spaces: `key=value` switches and bare
//! flags, as on Linux and UML. A value may be double-quoted to hold spaces
//! (`init="/bin/sh -c true"`). Unknown words are kept and ignored by the kernel.

/// One word of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word<'a> {
    /// The part before `=` (the whole word for a flag).
    pub key: &'a str,
    /// The part after `=`, without surrounding quotes; `None` for a bare flag.
    pub value: Option<&'a str>,
}

/// A parsed view of a command line; it borrows the original string.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    text: &'a str,
}

impl<'a> Cmdline<'a> {
    /// Wraps `text`.
    pub const fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// The raw text.
    pub const fn as_str(&self) -> &'a str {
        self.text
    }

    /// The words, in order.
    pub fn words(&self) -> Words<'a> {
        Words { rest: self.text }
    }

    /// The value of the last `key=value` with this key (later switches win, as in UML).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words().filter(|w| w.key == key).filter_map(|w| w.value).last()
    }

    /// Whether a bare flag `key` (or `key=1|on|yes|true`) is present.
    pub fn flag(&self, key: &str) -> bool {
        self.words().filter(|w| w.key == key).last().is_some_and(|w| match w.value {
            None => true,
            Some(v) => matches!(v, "1" | "on" | "yes" | "true"),
        })
    }

    /// The value of `key` parsed as an unsigned integer (decimal or `0x` hex).
    pub fn get_u64(&self, key: &str) -> Option<Result<u64, &'a str>> {
        self.get(key).map(|v| parse_u64(v).ok_or(v))
    }
}

/// Parses a decimal or `0x`-prefixed hexadecimal integer.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Iterator over the words of a [`Cmdline`].
#[derive(Clone, Debug)]
pub struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let s = self.rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        // A word ends at whitespace outside double quotes.
        let mut in_quotes = false;
        let mut end = s.len();
        for (i, c) in s.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                c if c.is_ascii_whitespace() && !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let word = &s[..end];
        self.rest = &s[end..];
        Some(match word.split_once('=') {
            Some((key, value)) => {
                let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
                Word { key, value: Some(value) }
            }
            None => Word { key: word, value: None },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_switches_and_flags() {
        let c = Cmdline::new("  mem=64M single  root=/dev/ubda\tinit=/bin/sh ");
        let words: Vec<_> = c.words().collect();
        assert_eq!(words.len(), 4);
        assert_eq!(words[1], Word { key: "single", value: None });
        assert_eq!(c.get("root"), Some("/dev/ubda"));
        assert_eq!(c.get("init"), Some("/bin/sh"));
        assert!(c.flag("single"));
        assert!(!c.flag("quiet"));
        assert_eq!(c.get("missing"), None);
    }

    #[test]
    fn later_switches_win_and_quotes_hold_spaces() {
        let c = Cmdline::new(r#"hz=100 init="/bin/sh -c 'exit 3'" hz=250 empty="#);
        assert_eq!(c.get("hz"), Some("250"));
        assert_eq!(c.get("init"), Some("/bin/sh -c 'exit 3'"));
        assert_eq!(c.get("empty"), Some(""));
    }

    #[test]
    fn numbers_and_boolean_flags() {
        let c = Cmdline::new("ticks=50 addr=0x1000 bad=12x quiet=0 verbose=on");
        assert_eq!(c.get_u64("ticks"), Some(Ok(50)));
        assert_eq!(c.get_u64("addr"), Some(Ok(0x1000)));
        assert_eq!(c.get_u64("bad"), Some(Err("12x")));
        assert_eq!(c.get_u64("none"), None);
        assert!(!c.flag("quiet"));
        assert!(c.flag("verbose"));
    }

    #[test]
    fn empty_and_blank_lines_have_no_words() {
        assert_eq!(Cmdline::new("").words().count(), 0);
        assert_eq!(Cmdline::new("   \t ").words().count(), 0);
    }
}
