//! The strftime patterns of `date:` and `datetime:` conversions, parsed once at load: reading
//! a department's text into a date or moment, accepted only in the one form the pattern writes
//! for it, and writing it back; and the shared `YYYY-MM-DD` form.

use std::fmt;

use chrono::format::{DelayedFormat, Item, Numeric, Pad, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};

use super::reason::Reason;

/// A strftime pattern, parsed once at load into chrono's items so that reading and writing a
/// value does not parse the pattern again.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    items: Vec<Item<'static>>,
    /// The pattern as a plain date, when it is one.
    plain_date: Option<PlainDate>,
}

impl Pattern {
    /// Parses a pattern; the error is a sentence for `xgate check`.
    pub(super) fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("the pattern is empty".to_owned());
        }
        let items = StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|_| format!("{text:?} is not a valid strftime pattern"))?;
        Ok(Pattern {
            text: text.to_owned(),
            plain_date: PlainDate::new(&items),
            items,
        })
    }

    /// The pattern as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The date a text names, accepted only in the one form the pattern writes for it.
    pub(super) fn read_date(&self, text: &str) -> Result<NaiveDate, Reason> {
        // The pattern writes exactly this text for this date: it is canonical.
        if let Some(date) = self.plain_date.as_ref().and_then(|plain| plain.read(text)) {
            return Ok(date);
        }
        let date = self
            .read(text)
            .and_then(|parsed| parsed.to_naive_date())
            .map_err(|error| self.reason(error))?;
        canonical(text, date.format_with_items(self.items.iter()))?;
        Ok(date)
    }

    /// The text the pattern writes for a date.
    pub(super) fn write_date(&self, date: NaiveDate) -> String {
        self.plain_date
            .as_ref()
            .and_then(|plain| plain.write(date))
            .unwrap_or_else(|| written(date.format_with_items(self.items.iter())))
    }

    /// The moment a text names, at `offset` when the pattern has none, accepted only in the
    /// one form the pattern writes for it.
    pub(super) fn read_date_time(
        &self,
        text: &str,
        offset: Option<FixedOffset>,
    ) -> Result<DateTime<FixedOffset>, Reason> {
        let parsed = self.read(text).map_err(|error| self.reason(error))?;
        let moment = match offset {
            None => parsed.to_datetime().map_err(|error| self.reason(error))?,
            Some(offset) => parsed
                .to_naive_datetime_with_offset(0)
                .map_err(|error| self.reason(error))?
                .and_local_timezone(offset)
                .single()
                .ok_or(Reason::OutOfRange)?,
        };
        canonical(text, moment.format_with_items(self.items.iter()))?;
        Ok(moment)
    }

    /// The text the pattern writes for a moment, in the moment's offset.
    pub(super) fn write_date_time(&self, moment: &DateTime<FixedOffset>) -> String {
        written(moment.format_with_items(self.items.iter()))
    }

    /// Reads `text` into chrono's fields, as `NaiveDate::parse_from_str` and its siblings do
    /// before they assemble a value.
    fn read(&self, text: &str) -> Result<Parsed, chrono::ParseError> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text, self.items.iter())?;
        Ok(parsed)
    }

    /// Why chrono did not read a text: a well-shaped text naming a day that does not exist
    /// (`20160231`) or text of another shape.
    fn reason(&self, error: chrono::ParseError) -> Reason {
        match error.kind() {
            chrono::format::ParseErrorKind::OutOfRange
            | chrono::format::ParseErrorKind::Impossible => Reason::InvalidDate,
            _ => Reason::NoMatch {
                pattern: self.text.clone(),
            },
        }
    }
}

/// A date pattern of zero-padded `%Y`, `%m` and `%d` (each once) and literal text, as most
/// departments write dates (`%Y%m%d`, `%Y/%m/%d`, `%Y年%m月%d日`): its texts are read and written
/// digit by digit. Chrono reads and writes these texts the same way (unsigned numbers at their
/// fixed width, literals exactly); it still handles every other text, with its reasons.
#[derive(Debug, Clone)]
struct PlainDate {
    pieces: Vec<Piece>,
    /// The length in bytes of every text the pattern writes for years 0 to 9999.
    length: usize,
}

#[derive(Debug, Clone)]
enum Piece {
    Year,
    Month,
    Day,
    Literal(Box<str>),
}

impl PlainDate {
    fn new(items: &[Item<'static>]) -> Option<PlainDate> {
        let mut pieces = Vec::with_capacity(items.len());
        for item in items {
            pieces.push(match item {
                Item::Numeric(Numeric::Year, Pad::Zero) => Piece::Year,
                Item::Numeric(Numeric::Month, Pad::Zero) => Piece::Month,
                Item::Numeric(Numeric::Day, Pad::Zero) => Piece::Day,
                Item::Literal(text) => Piece::Literal((*text).into()),
                Item::OwnedLiteral(text) => Piece::Literal(text.clone()),
                _ => return None,
            });
        }
        let count =
            |wanted: fn(&Piece) -> bool| pieces.iter().filter(|piece| wanted(piece)).count();
        if count(|piece| matches!(piece, Piece::Year)) != 1
            || count(|piece| matches!(piece, Piece::Month)) != 1
            || count(|piece| matches!(piece, Piece::Day)) != 1
        {
            return None;
        }
        let length = pieces.iter().map(Piece::width).sum();
        Some(PlainDate { pieces, length })
    }

    /// The date `text` names when it has exactly the pattern's shape and the day exists;
    /// `None` sends it to chrono.
    fn read(&self, text: &str) -> Option<NaiveDate> {
        if text.len() != self.length {
            return None;
        }
        let (mut year, mut month, mut day) = (0, 0, 0);
        let mut rest = text.as_bytes();
        for piece in &self.pieces {
            let (here, after) = rest.split_at_checked(piece.width())?;
            rest = after;
            let number = match piece {
                Piece::Literal(literal) if here == literal.as_bytes() => continue,
                Piece::Literal(_) => return None,
                _ => here.iter().try_fold(0u32, |number, byte| {
                    byte.is_ascii_digit()
                        .then(|| number * 10 + u32::from(byte - b'0'))
                })?,
            };
            match piece {
                Piece::Year => year = number,
                Piece::Month => month = number,
                _ => day = number,
            }
        }
        NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
    }

    /// The text of `date`; `None` for a year chrono writes with a sign.
    fn write(&self, date: NaiveDate) -> Option<String> {
        let year = u32::try_from(date.year())
            .ok()
            .filter(|year| *year <= 9999)?;
        let mut text = String::with_capacity(self.length);
        for piece in &self.pieces {
            let (number, width) = match piece {
                Piece::Literal(literal) => {
                    text.push_str(literal);
                    continue;
                }
                Piece::Year => (year, 4),
                Piece::Month => (date.month(), 2),
                Piece::Day => (date.day(), 2),
            };
            push_digits(&mut text, number, width);
        }
        Some(text)
    }
}

impl Piece {
    fn width(&self) -> usize {
        match self {
            Piece::Year => 4,
            Piece::Month | Piece::Day => 2,
            Piece::Literal(literal) => literal.len(),
        }
    }
}

/// Writes the last `width` decimal digits of `number`, zero-padded.
fn push_digits(text: &mut String, number: u32, width: u32) {
    for power in (0..width).rev() {
        let digit = number / 10u32.pow(power) % 10;
        text.push(char::from_digit(digit, 10).unwrap_or('0'));
    }
}

/// Refuses `text` unless it is exactly what the pattern writes for the value read from it.
fn canonical<'a, I, B>(text: &str, format: DelayedFormat<I>) -> Result<(), Reason>
where
    I: Iterator<Item = B> + Clone,
    B: std::borrow::Borrow<Item<'a>>,
{
    // Compared piece by piece as chrono writes it: an accepted value costs no allocation.
    let mut rest = Compare { rest: text };
    if format.write_to(&mut rest).is_ok() && rest.rest.is_empty() {
        Ok(())
    } else {
        Err(Reason::NotCanonical {
            expected: written(format),
        })
    }
}

/// A `fmt::Write` that fails as soon as what is written stops matching the expected text.
struct Compare<'t> {
    rest: &'t str,
}

impl fmt::Write for Compare<'_> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let rest = self.rest.strip_prefix(piece).ok_or(fmt::Error)?;
        self.rest = rest;
        Ok(())
    }
}

/// The text chrono writes for a value.
fn written<'a, I, B>(format: DelayedFormat<I>) -> String
where
    I: Iterator<Item = B> + Clone,
    B: std::borrow::Borrow<Item<'a>>,
{
    let mut text = String::with_capacity(32);
    // Writing into a `String` fails only for items that cannot be written, which a compiled
    // pattern does not have (`Pattern::parse` refuses them); the text is then what was written.
    format.write_to(&mut text).unwrap_or(());
    text
}

/// A shared date, `YYYY-MM-DD`, as RFC 3339 full-date has it (exactly four year digits).
pub(super) fn shared_date(date: NaiveDate) -> Result<String, Reason> {
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return Err(Reason::OutOfRange);
    }
    // What chrono's `%Y-%m-%d` writes for these years, digit by digit.
    let mut text = String::with_capacity(10);
    push_digits(&mut text, year.unsigned_abs(), 4);
    text.push('-');
    push_digits(&mut text, date.month(), 2);
    text.push('-');
    push_digits(&mut text, date.day(), 2);
    Ok(text)
}

/// Reads a shared date: only the text `%Y-%m-%d` writes for it.
pub(super) fn read_shared_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes[range].iter().try_fold(0u32, |number, byte| {
            byte.is_ascii_digit()
                .then(|| number * 10 + u32::from(byte - b'0'))
        })
    };
    if bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-' {
        // The common shape, read directly; a day that does not exist is not a date.
        let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        return NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day);
    }
    // Anything else goes through chrono (which also reads signed years past 9999), and
    // counts only when chrono writes it back the same.
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    (date.format("%Y-%m-%d").to_string() == text).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_dates_read_and_write_as_chrono_does() {
        for pattern in ["%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日", "%d.%m.%Y"] {
            let compiled = Pattern::parse(pattern).unwrap();
            let plain = compiled.plain_date.as_ref().unwrap();
            for (year, month, day) in [(2019, 3, 1), (0, 1, 1), (9999, 12, 31), (2024, 2, 29)] {
                let date = NaiveDate::from_ymd_opt(year, month, day).unwrap();
                let text = date.format(pattern).to_string();
                assert_eq!(
                    plain.write(date).as_deref(),
                    Some(text.as_str()),
                    "{pattern}"
                );
                assert_eq!(plain.read(&text), Some(date), "{pattern} {text}");
                assert_eq!(NaiveDate::parse_from_str(&text, pattern).ok(), Some(date));
            }
            // Years chrono writes with a sign, and texts of another shape, go to chrono.
            let far = NaiveDate::from_ymd_opt(10000, 1, 1).unwrap();
            assert_eq!(plain.write(far), None);
            for other in ["2019031", "2019-03-01", " 2019031", "+2019031"] {
                assert_eq!(plain.read(other), None, "{pattern} {other}");
            }
        }
        // An impossible day is left to chrono, which says why.
        let pattern = Pattern::parse("%Y年%m月%d日").unwrap();
        assert_eq!(
            pattern.read_date("2019年02月30日"),
            Err(Reason::InvalidDate)
        );
        for not_plain in ["%Y-%m-%d %H", "%e/%m/%Y", "%Y%m", "%Y %m %d", "%Y%m%d%d"] {
            assert!(
                Pattern::parse(not_plain).unwrap().plain_date.is_none(),
                "{not_plain}"
            );
        }
    }

    #[test]
    fn shared_dates_are_written_and_read_as_chrono_does() {
        for (year, month, day) in [(2019, 3, 1), (0, 1, 1), (9999, 12, 31)] {
            let date = NaiveDate::from_ymd_opt(year, month, day).unwrap();
            let text = date.format("%Y-%m-%d").to_string();
            assert_eq!(shared_date(date).as_deref(), Ok(text.as_str()));
            assert_eq!(read_shared_date(&text), Some(date));
        }
        let far = NaiveDate::from_ymd_opt(10000, 1, 1).unwrap();
        assert_eq!(shared_date(far), Err(Reason::OutOfRange));
        // Signed years past 9999 are chrono's own form, read back as chrono reads them.
        assert_eq!(read_shared_date("+10000-01-01"), Some(far));
        for not_a_date in [
            "2019-3-1",
            "2019-02-30",
            "2019/03/01",
            " 2019-03-01",
            "２０１９-03-01",
        ] {
            assert_eq!(read_shared_date(not_a_date), None, "{not_a_date}");
        }
    }
}
