//! Why a value does not convert: the one reason type of conversions and date patterns.

/// Why a value does not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The value has the wrong JSON type.
    WrongType {
        /// `string`, `number` or `boolean`.
        expected: &'static str,
    },
    /// Text in the pattern's shape naming a day (or time) that does not exist.
    InvalidDate,
    /// Text that the pattern does not read.
    NoMatch {
        /// The strftime pattern.
        pattern: String,
    },
    /// A value the conversion reads, but not in the one form it writes back.
    NotCanonical {
        /// The canonical form of the same value.
        expected: String,
    },
    /// A shared date that is not `YYYY-MM-DD`.
    NotSharedDate,
    /// A shared date-time that is not RFC 3339.
    NotSharedDateTime,
    /// A value missing from the code table.
    UnknownCode,
    /// A number that cannot be represented exactly on the other side.
    NotExact,
    /// A number or date out of the representable range.
    OutOfRange,
    /// Text that is neither boolean token.
    UnknownToken {
        /// The token for true.
        truthy: String,
        /// The token for false.
        falsy: String,
    },
}

impl Reason {
    /// The reason in English or Chinese.
    pub fn message(&self, zh: bool) -> String {
        match (self, zh) {
            (Reason::WrongType { expected }, false) => format!("expected a {expected}"),
            (Reason::WrongType { expected }, true) => format!("应为{}", type_zh(expected)),
            (Reason::NoMatch { pattern }, false) => {
                format!("does not match the pattern {pattern}")
            }
            (Reason::NoMatch { pattern }, true) => format!("不符合格式 {pattern}"),
            (Reason::InvalidDate, false) => "not a valid calendar date or time".to_owned(),
            (Reason::InvalidDate, true) => "不是有效的日期或时间".to_owned(),
            (Reason::NotCanonical { expected }, false) => {
                format!("not in canonical form; write {expected}")
            }
            (Reason::NotCanonical { expected }, true) => format!("写法不规范，应写作 {expected}"),
            (Reason::NotSharedDate, false) => "expected a date YYYY-MM-DD".to_owned(),
            (Reason::NotSharedDate, true) => "应为 YYYY-MM-DD 格式的日期".to_owned(),
            (Reason::NotSharedDateTime, false) => "expected an RFC 3339 date-time".to_owned(),
            (Reason::NotSharedDateTime, true) => "应为 RFC 3339 格式的日期时间".to_owned(),
            (Reason::UnknownCode, false) => "not a value of the code table".to_owned(),
            (Reason::UnknownCode, true) => "不是代码表中的值".to_owned(),
            (Reason::NotExact, false) => "cannot be represented exactly".to_owned(),
            (Reason::NotExact, true) => "无法精确换算".to_owned(),
            (Reason::OutOfRange, false) => "out of range".to_owned(),
            (Reason::OutOfRange, true) => "超出可表示的范围".to_owned(),
            (Reason::UnknownToken { truthy, falsy }, false) => {
                format!("expected {truthy:?} or {falsy:?}")
            }
            (Reason::UnknownToken { truthy, falsy }, true) => {
                format!("应为 {truthy:?} 或 {falsy:?}")
            }
        }
    }
}

fn type_zh(expected: &str) -> &'static str {
    match expected {
        "string" => "字符串",
        "number" => "数字",
        "boolean" => "布尔值",
        _ => "其他类型",
    }
}
