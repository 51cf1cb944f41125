//! Hyperparameter specs of `studio run --hyperparam NAME=SPEC`, and the
//! substitution of values into a copy of the script.
//!
//! Grid specs keep StudioML's syntax with its bugs fixed. Ranges never
//! overshoot their end and `a:uN:b` works as documented. A zero step or a
//! log range through 0 is an error instead of a crash or `nan`. Values print
//! as clean decimals (`0.06`, not `0.060000000000000005`). Values are
//! computed as `a + i * step` in `f64` and then rounded to 12 significant
//! digits, which removes the binary noise of every spec a user can type.
//!
//! Optimizer specs (`MIN:MAX[:LEN][:FLAGS]`) describe the ranges that the
//! random, CMA-ES and plugin optimizers search.

use std::collections::BTreeMap;
use std::fmt;

/// Maximum number of values of one grid parameter. A larger grid is almost
/// certainly a typo, such as a step of `0.0001` instead of a count.
pub const MAX_GRID_VALUES: usize = 100_000;

/// A bad `--hyperparam` value, with the value and the fix in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --hyperparam {spec:?}: {reason}")]
pub struct HyperparamError {
    pub spec: String,
    pub reason: String,
}

fn invalid(spec: &str, reason: impl Into<String>) -> HyperparamError {
    HyperparamError {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

/// One grid parameter: its name and the values it takes, as the text that
/// is substituted into the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridParam {
    pub name: String,
    pub values: Vec<String>,
}

/// Splits `NAME=SPEC` and checks that NAME can be found as a whole word.
pub fn split_name(argument: &str) -> Result<(&str, &str), HyperparamError> {
    let Some((name, spec)) = argument.split_once('=') else {
        return Err(invalid(
            argument,
            "missing '=': write NAME=SPEC, as in lr=0.01:0.01:0.1",
        ));
    };
    let name = name.trim();
    let valid_name = !name.is_empty()
        && !name.starts_with(|character: char| character.is_ascii_digit())
        && name.chars().all(is_word_character);
    if !valid_name {
        return Err(invalid(
            argument,
            format!("the name {name:?} must be a Python identifier (letters, digits and '_')"),
        ));
    }
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(invalid(argument, "no values after '='"));
    }
    Ok((name, spec))
}

/// Parses a grid parameter `NAME=SPEC`. SPEC is one of: `2,5,6` (a list),
/// `0.1` (one value), `a:b` or `:b` (steps of 1 from `a`, or 0, to `b`
/// included), `a:s:b` (steps of `s`, `b` included when on the grid), `a:N:b`
/// with an integer `N` greater than `|b-a|` or `a:uN:b` (N evenly spaced
/// points), and `a:lN:b` or `a:Nl:b` (N log-spaced points).
pub fn parse_grid(argument: &str) -> Result<GridParam, HyperparamError> {
    let (name, spec) = split_name(argument)?;
    let numbers = grid_values(spec).map_err(|reason| invalid(argument, reason))?;
    if numbers.is_empty() {
        return Err(invalid(
            argument,
            "the range is empty: the end must be reachable from the start with the step's sign",
        ));
    }
    if numbers.len() > MAX_GRID_VALUES {
        return Err(invalid(
            argument,
            format!(
                "{} values is more than {MAX_GRID_VALUES}: use a larger step or a count",
                numbers.len()
            ),
        ));
    }
    Ok(GridParam {
        name: name.to_string(),
        values: numbers.into_iter().map(format_number).collect(),
    })
}

fn grid_values(spec: &str) -> Result<Vec<f64>, String> {
    if spec.contains(',') {
        return spec
            .split(',')
            .map(|item| parse_number(item.trim()))
            .collect();
    }
    let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
    match parts.as_slice() {
        [single] => Ok(vec![parse_number(single)?]),
        [start, end] => {
            let start = parse_start(start)?;
            let end = parse_number(end)?;
            Ok(steps(start, 1.0, end))
        }
        [start, middle, end] => {
            let start = parse_start(start)?;
            let end = parse_number(end)?;
            three_part_values(start, middle, end)
        }
        _ => Err(format!(
            "{} ':'-separated fields; a grid range has at most 3 (START:STEP:END)",
            parts.len()
        )),
    }
}

fn three_part_values(start: f64, middle: &str, end: f64) -> Result<Vec<f64>, String> {
    if let Some(count) = middle
        .strip_prefix('l')
        .or_else(|| middle.strip_suffix('l'))
    {
        let count = parse_count(count, middle)?;
        if start <= 0.0 || end <= 0.0 {
            return Err(format!(
                "a log range needs both ends above 0, got {} and {}",
                format_number(start),
                format_number(end)
            ));
        }
        let points = linspace(start.log10(), end.log10(), count);
        return Ok(points
            .into_iter()
            .map(|exponent| 10f64.powf(exponent))
            .collect());
    }
    if let Some(count) = middle.strip_prefix('u') {
        let count = parse_count(count, middle)?;
        return Ok(linspace(start, end, count));
    }
    let step = parse_number(middle)?;
    if step == 0.0 {
        return Err("the step is 0: use a non-zero step, or a count such as u10".into());
    }
    // StudioML's rule: an integer "step" larger than the range is a count.
    if step.fract() == 0.0 && step > (end - start).abs() {
        return Ok(linspace(start, end, step as usize));
    }
    Ok(steps(start, step, end))
}

fn parse_number(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(number),
        _ => Err(format!("{text:?} is not a number")),
    }
}

fn parse_start(text: &str) -> Result<f64, String> {
    if text.is_empty() {
        Ok(0.0)
    } else {
        parse_number(text)
    }
}

fn parse_count(text: &str, field: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(format!(
            "{field:?} must hold a point count of at least 1, as in u10 or l5"
        )),
    }
}

/// `start, start+step, ...` up to `end` included when it lies on the grid
/// (within a relative tolerance of 1e-9 steps), never past it.
fn steps(start: f64, step: f64, end: f64) -> Vec<f64> {
    let intervals = (end - start) / step;
    if intervals < -1e-9 {
        return Vec::new();
    }
    let count = (intervals + 1e-9).floor() as usize + 1;
    (0..count.min(MAX_GRID_VALUES + 1))
        .map(|index| start + index as f64 * step)
        .collect()
}

/// `count` evenly spaced points from `start` to `end`, both included.
fn linspace(start: f64, end: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![start];
    }
    let step = (end - start) / (count - 1) as f64;
    (0..count.min(MAX_GRID_VALUES + 1))
        .map(|index| {
            if index + 1 == count {
                end
            } else {
                start + index as f64 * step
            }
        })
        .collect()
}

/// Rounds to 12 significant digits and prints the shortest decimal that
/// reads back as the same `f64`: `0.06`, `1`, `0.00001`, `-2.5`.
pub fn format_number(number: f64) -> String {
    let rounded: f64 = format!("{number:.11e}").parse().unwrap_or(number);
    let rounded = if rounded == 0.0 { 0.0 } else { rounded };
    format!("{rounded}")
}

/// Builds every combination of the parameters' values (their Cartesian
/// product). The last parameter varies fastest.
pub fn grid_product(params: &[GridParam]) -> Vec<BTreeMap<String, String>> {
    let mut combinations = vec![BTreeMap::new()];
    for param in params {
        let mut next = Vec::with_capacity(combinations.len() * param.values.len());
        for combination in &combinations {
            for value in &param.values {
                let mut extended: BTreeMap<String, String> = combination.clone();
                extended.insert(param.name.clone(), value.clone());
                next.push(extended);
            }
        }
        combinations = next;
    }
    combinations
}

/// Number of combinations of `params`, or `None` when it overflows.
pub fn grid_size(params: &[GridParam]) -> Option<usize> {
    params
        .iter()
        .try_fold(1usize, |total, param| total.checked_mul(param.values.len()))
}

fn is_word_character(character: char) -> bool {
    character.is_alphanumeric() || character == '_'
}

/// Replaces each whole-word occurrence of `name` in `script` by `value` when
/// no `=` follows it on the same line, StudioML's rule for "the right-hand
/// side": `lr = 0.5` is kept, `print("lr =", lr)` and `SGD(lr=lr)` get the
/// value. Unlike StudioML, a last line without a newline is substituted too,
/// and an attribute such as `model.lr` is left alone.
pub fn substitute(script: &str, name: &str, value: &str) -> String {
    let mut result = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        substitute_line(line, name, value, &mut result);
    }
    result
}

fn substitute_line(line: &str, name: &str, value: &str, result: &mut String) {
    let mut position = 0;
    while let Some(offset) = line[position..].find(name) {
        let start = position + offset;
        let end = start + name.len();
        // A name after '.' is an attribute of something else (`model.lr`).
        let before_is_word = line[..start]
            .chars()
            .next_back()
            .is_some_and(|character| is_word_character(character) || character == '.');
        let after_is_word = line[end..].chars().next().is_some_and(is_word_character);
        let equals_follows = line[end..].contains('=');
        result.push_str(&line[position..start]);
        if !before_is_word && !after_is_word && !equals_follows {
            result.push_str(value);
        } else {
            result.push_str(name);
        }
        position = end;
    }
    result.push_str(&line[position..]);
}

/// Direction of a `--metric NAME[:min|:max]`: the best value is the lowest,
/// the highest, or simply the last one reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricMode {
    Min,
    Max,
    Last,
}

/// A parsed `--metric` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: String,
    pub mode: MetricMode,
}

impl MetricSpec {
    /// Parses `NAME`, `NAME:min`, `NAME:max` (also `NAME:last` and
    /// `NAME:final`, which mean the last value).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, mode) = text.split_once(':').unwrap_or((text, ""));
        if name.trim().is_empty() {
            return Err(format!(
                "invalid --metric {text:?}: give a name, as in --metric loss:min"
            ));
        }
        let mode = match mode {
            "min" => MetricMode::Min,
            "max" => MetricMode::Max,
            "" | "last" | "final" => MetricMode::Last,
            _ => {
                return Err(format!(
                "invalid --metric {text:?}: the part after ':' must be min or max (or nothing for the last value)"
            ))
            }
        };
        Ok(Self {
            name: name.trim().to_string(),
            mode,
        })
    }

    /// Folds a new value into the best so far.
    pub fn fold(&self, best: Option<f64>, value: f64) -> f64 {
        match (self.mode, best) {
            (MetricMode::Min, Some(best)) => best.min(value),
            (MetricMode::Max, Some(best)) => best.max(value),
            _ => value,
        }
    }

    /// True when `candidate` is better than `incumbent` (for `Last`, higher
    /// is taken as better).
    pub fn is_better(&self, candidate: f64, incumbent: f64) -> bool {
        match self.mode {
            MetricMode::Min => candidate < incumbent,
            MetricMode::Max | MetricMode::Last => candidate > incumbent,
        }
    }
}

/// Range of one parameter for the random, CMA-ES and plugin optimizers:
/// `MIN:MAX[:LEN][:FLAGS]` with the flags `u` (unbounded), `r` (random
/// initial value instead of the midpoint), `l` (log scale) and `a` (a numpy
/// array of LEN values).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerParam {
    pub name: String,
    pub min: f64,
    pub max: f64,
    /// Length of an array parameter; `None` for a scalar.
    pub array_length: Option<usize>,
    /// `u`: values may leave `[min, max]`.
    pub unbounded: bool,
    /// `r`: start from a random point instead of the middle of the range.
    pub random_init: bool,
    /// `l`: search `log10(value)` evenly; both ends must be above 0.
    pub log: bool,
}

impl OptimizerParam {
    /// Parses `NAME=MIN:MAX[:LEN][:FLAGS]`.
    pub fn parse(argument: &str) -> Result<Self, HyperparamError> {
        let (name, spec) = split_name(argument)?;
        let fail = |reason: String| invalid(argument, reason);
        let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(fail(
                "an optimizer range is MIN:MAX[:LEN][:FLAGS], as in lr=0.0001:0.1:l".into(),
            ));
        }
        let min = parse_number(parts[0]).map_err(&fail)?;
        let max = parse_number(parts[1]).map_err(&fail)?;
        let mut array_length = None;
        let mut flags = "";
        for part in &parts[2..] {
            if part.chars().all(|character| character.is_ascii_digit()) && !part.is_empty() {
                if array_length.is_some() {
                    return Err(fail("LEN is given twice".into()));
                }
                array_length = Some(parse_count(part, part).map_err(&fail)?);
            } else if flags.is_empty() {
                flags = part;
            } else {
                return Err(fail(format!("unexpected field {part:?} after the flags")));
            }
        }
        let mut param = OptimizerParam {
            name: name.to_string(),
            min,
            max,
            array_length: None,
            unbounded: false,
            random_init: false,
            log: false,
        };
        let mut array = false;
        for flag in flags.chars() {
            let seen = match flag {
                'u' => std::mem::replace(&mut param.unbounded, true),
                'r' => std::mem::replace(&mut param.random_init, true),
                'l' => std::mem::replace(&mut param.log, true),
                'a' => std::mem::replace(&mut array, true),
                other => {
                    return Err(fail(format!(
                        "unknown flag {other:?}: use u (unbounded), r (random start), l (log), a (array)"
                    )))
                }
            };
            if seen {
                return Err(fail(format!("the flag {flag:?} is given twice")));
            }
        }
        if min > max {
            return Err(fail(format!(
                "MIN {} is larger than MAX {}",
                format_number(min),
                format_number(max)
            )));
        }
        if param.log && min <= 0.0 {
            return Err(fail(format!(
                "a log range needs MIN above 0, got {}",
                format_number(min)
            )));
        }
        match (array, array_length) {
            (true, None) => {
                return Err(fail(
                    "the flag a (array) needs LEN, as in w=0:1:10:a".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(fail(
                    "LEN is only for arrays: add the flag a, as in w=0:1:10:a".into(),
                ))
            }
            _ => param.array_length = array_length,
        }
        Ok(param)
    }

    /// Number of search dimensions: LEN for an array, else 1.
    pub fn dimensions(&self) -> usize {
        self.array_length.unwrap_or(1)
    }

    /// Maps a point of the unit interval (0 = MIN, 1 = MAX, linear or log)
    /// to a value; points outside `[0, 1]` are clipped unless `u` is set.
    pub fn from_unit(&self, unit: f64) -> f64 {
        let unit = if self.unbounded {
            unit
        } else {
            unit.clamp(0.0, 1.0)
        };
        if self.log {
            let (low, high) = (self.min.log10(), self.max.log10());
            10f64.powf(low + unit * (high - low))
        } else {
            self.min + unit * (self.max - self.min)
        }
    }
}

impl fmt::Display for GridParam {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}=[{}]", self.name, self.values.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(spec: &str) -> Vec<String> {
        parse_grid(&format!("x={spec}"))
            .unwrap_or_else(|error| panic!("{spec}: {error}"))
            .values
    }

    #[test]
    fn grid_forms_expand_to_expected_values() {
        let cases: &[(&str, &[&str])] = &[
            // StudioML's own test cases.
            ("1,2,3", &["1", "2", "3"]),
            (":5", &["0", "1", "2", "3", "4", "5"]),
            ("2:5", &["2", "3", "4", "5"]),
            ("0.1:0.05:0.3", &["0.1", "0.15", "0.2", "0.25", "0.3"]),
            ("0.1:3:0.3", &["0.1", "0.2", "0.3"]),
            ("0.01:4l:10", &["0.01", "0.1", "1", "10"]),
            // Lists and single values.
            ("2,5,6", &["2", "5", "6"]),
            ("0.1", &["0.1"]),
            (" 1e-3 , 2.5 ", &["0.001", "2.5"]),
            ("-1", &["-1"]),
            // Integer steps never pass the end.
            ("0:3", &["0", "1", "2", "3"]),
            ("1:3.5", &["1", "2", "3"]),
            ("5:5", &["5"]),
            // Steps, end included when on the grid.
            ("0:5:10", &["0", "5", "10"]),
            ("0:10:10", &["0", "10"]),
            ("10:-2:0", &["10", "8", "6", "4", "2", "0"]),
            ("0:0.4:1", &["0", "0.4", "0.8"]),
            (
                "0.01:0.01:0.1",
                &[
                    "0.01", "0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08", "0.09", "0.1",
                ],
            ),
            // An integer step larger than the range is a count.
            ("0:3:1", &["0", "0.5", "1"]),
            (
                "1e-5:10:0.1",
                &[
                    "0.00001", "0.01112", "0.02223", "0.03334", "0.04445", "0.05556", "0.06667",
                    "0.07778", "0.08889", "0.1",
                ],
            ),
            // Counts with u, logs with l before or after the count.
            ("0:u5:1", &["0", "0.25", "0.5", "0.75", "1"]),
            ("2:u1:7", &["2"]),
            (
                "1e-5:l5:0.1",
                &["0.00001", "0.0001", "0.001", "0.01", "0.1"],
            ),
            ("1:3l:100", &["1", "10", "100"]),
        ];
        for (spec, expected) in cases {
            assert_eq!(values(spec), *expected, "spec {spec}");
        }
    }

    #[test]
    fn grid_errors_name_the_problem() {
        let cases = [
            ("lr", "missing '='"),
            ("lr=", "no values"),
            ("=1,2", "Python identifier"),
            ("2lr=1", "Python identifier"),
            ("lr=0:0:1", "the step is 0"),
            ("lr=0:l3:1", "log range needs both ends above 0"),
            ("lr=-1:3l:1", "log range needs both ends above 0"),
            ("lr=1,a,3", "\"a\" is not a number"),
            ("lr=abc", "\"abc\" is not a number"),
            ("lr=0:x:1", "\"x\" is not a number"),
            ("lr=5:1", "the range is empty"),
            ("lr=0:-1:5", "the range is empty"),
            ("lr=0:u0:1", "point count"),
            ("lr=0:1:2:3", "at most 3"),
            ("lr=0:1e-9:1", "more than 100000"),
            ("lr=nan", "is not a number"),
        ];
        for (argument, expected) in cases {
            let error = parse_grid(argument).expect_err(argument).to_string();
            assert!(error.contains(expected), "{argument}: {error}");
            assert!(error.contains(argument), "{argument}: {error}");
        }
    }

    #[test]
    fn product_of_two_parameters() {
        let a = parse_grid("a=1,2,3").unwrap();
        let b = parse_grid("b=4,5").unwrap();
        let product = grid_product(&[a.clone(), b.clone()]);
        assert_eq!(grid_size(&[a, b]), Some(6));
        let pairs: Vec<(String, String)> = product
            .iter()
            .map(|combination| (combination["a"].clone(), combination["b"].clone()))
            .collect();
        let expected = [
            ("1", "4"),
            ("1", "5"),
            ("2", "4"),
            ("2", "5"),
            ("3", "4"),
            ("3", "5"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(pairs, expected);
    }

    #[test]
    fn substitution_follows_the_right_hand_side_rule() {
        let cases = [
            ("lr = 0.5\n", "lr = 0.5\n"),
            ("print(\"lr =\", lr)\n", "print(\"lr =\", 0.2)\n"),
            ("opt = SGD(lr=lr)\n", "opt = SGD(lr=0.2)\n"),
            ("x = model.lr\n", "x = model.lr\n"),
            ("print(model.lr)\n", "print(model.lr)\n"),
            ("print(lr_decay, xlr, lr2)\n", "print(lr_decay, xlr, lr2)\n"),
            ("print(lr) # lr = old\n", "print(lr) # lr = old\n"),
            ("f(lr, lr)\nprint(lr)", "f(0.2, 0.2)\nprint(0.2)"),
            ("if lr == 1:\n", "if lr == 1:\n"),
        ];
        for (script, expected) in cases {
            assert_eq!(substitute(script, "lr", "0.2"), expected, "{script:?}");
        }
    }

    #[test]
    fn metric_specs() {
        let loss = MetricSpec::parse("loss:min").unwrap();
        assert_eq!(loss.mode, MetricMode::Min);
        assert_eq!(loss.fold(Some(0.0), 0.5), 0.0);
        assert!(loss.is_better(0.0, 0.1));
        let accuracy = MetricSpec::parse("accuracy:max").unwrap();
        assert_eq!(accuracy.fold(Some(0.0), -1.0), 0.0);
        assert_eq!(MetricSpec::parse("acc").unwrap().mode, MetricMode::Last);
        assert_eq!(
            MetricSpec::parse("acc:final").unwrap().mode,
            MetricMode::Last
        );
        assert!(MetricSpec::parse(":min").is_err());
        assert!(MetricSpec::parse("loss:best").is_err());
    }

    #[test]
    fn optimizer_ranges() {
        let lr = OptimizerParam::parse("lr=0.0001:0.1:lr").unwrap();
        assert!(lr.log);
        assert!(lr.random_init);
        assert!(!lr.unbounded);
        assert_eq!(lr.array_length, None);
        assert_eq!(format_number(lr.from_unit(0.0)), "0.0001");
        assert_eq!(format_number(lr.from_unit(1.0)), "0.1");
        assert_eq!(format_number(lr.from_unit(2.0)), "0.1");

        let weights = OptimizerParam::parse("w=5:5:10:alu").unwrap();
        assert_eq!(weights.array_length, Some(10));
        assert_eq!(weights.dimensions(), 10);
        assert!(weights.unbounded);
        assert!(weights.log);

        let plain = OptimizerParam::parse("x=-5:5").unwrap();
        assert_eq!(plain.from_unit(0.5), 0.0);
        assert_eq!(plain.from_unit(-1.0), -5.0);

        let errors = [
            ("lr=0:1:10:urla", "log range needs MIN above 0"),
            ("lr=0:5:l", "log range needs MIN above 0"),
            ("lr=1:0", "larger than MAX"),
            ("lr=0:1:a", "needs LEN"),
            ("lr=0:1:3", "only for arrays"),
            ("lr=0:1:uu", "given twice"),
            ("lr=0:1:q", "unknown flag"),
            ("lr=0", "MIN:MAX"),
            ("lr=0:x", "not a number"),
        ];
        for (argument, expected) in errors {
            let error = OptimizerParam::parse(argument)
                .expect_err(argument)
                .to_string();
            assert!(error.contains(expected), "{argument}: {error}");
        }
    }
}
