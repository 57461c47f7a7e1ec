//! Number formatting that matches what the Python whisper tools print.

/// A float as Python's `repr`/`str` prints it: shortest round-trip digits, `.0` on integral
/// values, scientific notation below 1e-4 and from 1e16, `inf`, `-inf`, `nan`.
pub(crate) fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{v:e}"); // shortest round-trip digits, e.g. "-1.25e3"
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    if (-4..16).contains(&exp) {
        let plain = format!("{v}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    }
}

/// A float as Python's `"%f" % v` prints it (whisper-fetch's value column).
pub(crate) fn py_fixed(v: f64) -> String {
    match v {
        v if v.is_nan() => "nan".into(),
        v if v.is_infinite() => py_float(v),
        v => format!("{v:.6}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{py_fixed, py_float};

    #[test]
    fn fixed_matches_percent_f() {
        assert_eq!(py_fixed(1.5), "1.500000");
        assert_eq!(py_fixed(-3.25), "-3.250000");
        assert_eq!(py_fixed(1e-7), "0.000000");
        assert_eq!(py_fixed(f64::INFINITY), "inf");
        assert_eq!(py_fixed(f64::NAN), "nan");
    }

    #[test]
    fn matches_python_repr() {
        for (v, python) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-0.0, "-0.0"),
            (0.30000001192092896, "0.30000001192092896"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789012345.6, "123456789012345.6"),
            (-2.5e300, "-2.5e+300"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(py_float(v), python);
        }
    }
}
