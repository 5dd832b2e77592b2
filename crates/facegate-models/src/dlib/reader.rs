//! dlib's serialization primitives (`dlib/serialize.h` and friends).
//!
//! * Integers: a control byte (low 4 bits = byte count, `0x80` = negative
//!   for signed types) followed by that many little-endian magnitude bytes.
//! * Floats: `float_details`, i.e. an int64 mantissa and an int16 exponent,
//!   value `mantissa · 2^exponent` (exponents 32000/32001/32002 = ±inf/NaN).
//! * bool: ASCII `'0'` / `'1'`.
//! * Strings and vectors: an unsigned length, then the elements.
//! * Matrices: rows and columns (written negated by current dlib), then the
//!   elements row-major.
//! * DNN tensors: version 2, four int64 dims, then raw little-endian f32.

use super::DlibError;

/// A cursor over dlib-serialized bytes. Every read is bounds checked and no
/// read allocates more than the remaining input could encode.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A dlib DNN tensor (`resizable_tensor`): NCHW dims and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// `[n, k, nr, nc]`, dlib's names for N, C, H, W.
    pub dims: [u64; 4],
    /// The elements, row-major in `dims` order.
    pub data: Vec<f32>,
}

/// The shape of a dlib `alias_tensor` (a view into a layer's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasTensor {
    /// `[n, k, nr, nc]`, dlib's names for N, C, H, W.
    pub dims: [u64; 4],
}

impl AliasTensor {
    /// Number of elements (saturating; callers compare it with real sizes).
    pub fn size(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn eof(&self, what: &'static str) -> DlibError {
        DlibError::UnexpectedEof {
            offset: self.pos,
            what,
        }
    }

    /// Reads one raw byte.
    pub fn byte(&mut self, what: &'static str) -> Result<u8, DlibError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.eof(what))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DlibError> {
        if n > self.remaining() {
            return Err(self.eof(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// dlib's `unpack_int`: `max_bytes` is `sizeof(T)`. Returns the sign
    /// flag and the magnitude.
    fn packed(&mut self, max_bytes: u8, signed: bool) -> Result<(bool, u64), DlibError> {
        let start = self.pos;
        let control = self.byte("integer")?;
        // Signed types ignore the 3 reserved bits; unsigned ones keep the
        // sign bit so that a negative value fails the size check, as in dlib.
        let (negative, size) = if signed {
            (control & 0x80 != 0, control & 0x0f)
        } else {
            (false, control & 0x8f)
        };
        if size == 0 || size > max_bytes {
            return Err(DlibError::BadInteger {
                offset: start,
                control,
            });
        }
        let mut value = 0u64;
        for (i, &b) in self.bytes(usize::from(size), "integer")?.iter().enumerate() {
            value |= u64::from(b) << (8 * i);
        }
        Ok((negative, value))
    }

    fn signed(&mut self, max_bytes: u8, what: &'static str) -> Result<i64, DlibError> {
        let start = self.pos;
        let (neg, mag) = self.packed(max_bytes, true)?;
        let bits = u32::from(max_bytes) * 8;
        let limit = 1u128 << (bits - 1);
        let v = if neg {
            -(i128::from(mag))
        } else {
            i128::from(mag)
        };
        if v >= limit as i128 || v < -(limit as i128) {
            return Err(DlibError::OutOfRange {
                offset: start,
                value: v,
                what,
            });
        }
        Ok(v as i64)
    }

    /// `int` (4 bytes).
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DlibError> {
        Ok(self.signed(4, what)? as i32)
    }

    /// `short` (2 bytes).
    pub fn i16(&mut self, what: &'static str) -> Result<i16, DlibError> {
        Ok(self.signed(2, what)? as i16)
    }

    /// `long`, `long long`, `int64` (8 bytes on LP64).
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DlibError> {
        self.signed(8, what)
    }

    /// `unsigned long`, `size_t`, `uint64` (8 bytes on LP64).
    pub fn u64(&mut self, _what: &'static str) -> Result<u64, DlibError> {
        Ok(self.packed(8, false)?.1)
    }

    /// `unsigned int` (4 bytes).
    pub fn u32(&mut self, _what: &'static str) -> Result<u32, DlibError> {
        Ok(self.packed(4, false)?.1 as u32)
    }

    /// `bool`, stored as ASCII `'0'` / `'1'`.
    pub fn bool(&mut self, _what: &'static str) -> Result<bool, DlibError> {
        let offset = self.pos;
        match self.byte("bool")? {
            b'0' => Ok(false),
            b'1' => Ok(true),
            byte => Err(DlibError::BadBool { offset, byte }),
        }
    }

    /// `float_details`: mantissa and exponent.
    fn float_details(&mut self) -> Result<(i64, i16), DlibError> {
        let offset = self.pos;
        let first = *self.buf.get(self.pos).ok_or_else(|| self.eof("float"))?;
        // dlib's pre-2013 ASCII floats have bits set in 0x70; never seen in
        // the models facegate uses.
        if first & 0x70 != 0 {
            return Err(DlibError::LegacyFloat { offset });
        }
        Ok((self.i64("float mantissa")?, self.i16("float exponent")?))
    }

    /// A `float` (`float_details` converted like dlib: `ldexpf((float)m, e)`).
    pub fn f32(&mut self) -> Result<f32, DlibError> {
        let (m, e) = self.float_details()?;
        Ok(match e {
            32000 => f32::INFINITY,
            32001 => f32::NEG_INFINITY,
            e if e > 32001 => f32::NAN,
            // (float)m, then one correctly rounded scaling: exact in f64
            // because the f32 mantissa has 24 bits and the exponent is clamped
            // far beyond f32's range.
            e => (f64::from(m as f32) * pow2(i32::from(e).clamp(-400, 400))) as f32,
        })
    }

    /// A `double`.
    pub fn f64(&mut self) -> Result<f64, DlibError> {
        let (m, e) = self.float_details()?;
        Ok(match e {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            e if e > 32001 => f64::NAN,
            e => ldexp(m as f64, i32::from(e)),
        })
    }

    /// An unsigned length checked against the remaining input, assuming
    /// each element takes at least `min_elem_bytes`.
    pub fn len(&mut self, min_elem_bytes: usize, what: &'static str) -> Result<usize, DlibError> {
        let offset = self.pos;
        let n = self.u64(what)?;
        let needed = u128::from(n) * min_elem_bytes as u128;
        if needed > self.remaining() as u128 {
            return Err(DlibError::TooLarge {
                offset,
                what,
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(n as usize)
    }

    /// `std::string` as raw bytes.
    pub fn string_bytes(&mut self) -> Result<&'a [u8], DlibError> {
        let n = self.len(1, "string")?;
        self.bytes(n, "string")
    }

    /// `std::string`, lossily decoded (dlib strings here are ASCII tags).
    pub fn string(&mut self) -> Result<String, DlibError> {
        Ok(String::from_utf8_lossy(self.string_bytes()?).into_owned())
    }

    /// Reads a string and checks it against `expected`.
    pub fn expect_string(&mut self, expected: &str) -> Result<(), DlibError> {
        let offset = self.pos;
        let s = self.string_bytes()?;
        if s != expected.as_bytes() {
            return Err(DlibError::Unexpected {
                offset,
                what: "tag",
                found: String::from_utf8_lossy(s).into_owned(),
            });
        }
        Ok(())
    }

    /// Whether the next item is the string `s` (does not consume it).
    pub fn peek_string_is(&self, s: &str) -> bool {
        let mut probe = self.clone();
        matches!(probe.string_bytes(), Ok(b) if b == s.as_bytes())
    }

    /// Reads an `int` version number and checks it is in `accepted`.
    pub fn version(&mut self, what: &'static str, accepted: &[i32]) -> Result<i32, DlibError> {
        let offset = self.pos;
        let v = self.i32(what)?;
        if !accepted.contains(&v) {
            return Err(DlibError::Unexpected {
                offset,
                what,
                found: v.to_string(),
            });
        }
        Ok(v)
    }

    /// `matrix<float>`: returns (rows, cols, row-major values).
    pub fn matrix_f32(&mut self) -> Result<(u64, u64, Vec<f32>), DlibError> {
        let offset = self.pos;
        let nr = self.i64("matrix rows")?.unsigned_abs();
        let nc = self.i64("matrix cols")?.unsigned_abs();
        // A serialized float takes at least 4 bytes (two 2-byte integers).
        let count = u128::from(nr) * u128::from(nc);
        if count.saturating_mul(4) > self.remaining() as u128 {
            return Err(DlibError::TooLarge {
                offset,
                what: "matrix",
                needed: count.saturating_mul(4),
                remaining: self.remaining(),
            });
        }
        let values = (0..count)
            .map(|_| self.f32())
            .collect::<Result<Vec<_>, _>>()?;
        Ok((nr, nc, values))
    }

    /// A DNN `tensor` / `resizable_tensor`.
    pub fn tensor(&mut self) -> Result<Tensor, DlibError> {
        self.version("tensor version", &[2])?;
        let dims = self.dims("tensor")?;
        let offset = self.pos;
        let count = dims
            .iter()
            .fold(1u128, |a, &d| a.saturating_mul(u128::from(d)));
        if count.saturating_mul(4) > self.remaining() as u128 {
            return Err(DlibError::TooLarge {
                offset,
                what: "tensor",
                needed: count.saturating_mul(4),
                remaining: self.remaining(),
            });
        }
        let raw = self.bytes(count as usize * 4, "tensor data")?;
        let data = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Tensor { dims, data })
    }

    /// An `alias_tensor` (shape only).
    pub fn alias_tensor(&mut self) -> Result<AliasTensor, DlibError> {
        self.version("alias_tensor version", &[1])?;
        Ok(AliasTensor {
            dims: self.dims("alias_tensor")?,
        })
    }

    fn dims(&mut self, what: &'static str) -> Result<[u64; 4], DlibError> {
        let mut dims = [0u64; 4];
        for d in &mut dims {
            let offset = self.pos;
            let v = self.i64(what)?;
            *d = u64::try_from(v).map_err(|_| DlibError::OutOfRange {
                offset,
                value: i128::from(v),
                what,
            })?;
        }
        Ok(dims)
    }
}

/// 2^e for |e| ≤ 1023 (exact).
fn pow2(e: i32) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e < -1022 {
        // Two steps keep subnormal results exact.
        pow2(e + 1000) * pow2(-1000)
    } else {
        f64::from_bits(((e + 1023) as u64) << 52)
    }
}

/// `std::ldexp` for doubles, in steps so intermediate powers stay finite.
fn ldexp(mut x: f64, mut e: i32) -> f64 {
    while e > 1000 && x.is_finite() && x != 0.0 {
        x *= pow2(1000);
        e -= 1000;
    }
    while e < -1000 && x != 0.0 {
        x *= pow2(-1000);
        e += 1000;
    }
    x * pow2(e.clamp(-1000, 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dlib's `pack_int` for signed values (test oracle).
    fn pack_signed(v: i64) -> Vec<u8> {
        let mut mag = v.unsigned_abs();
        let mut bytes = Vec::new();
        loop {
            bytes.push((mag & 0xff) as u8);
            mag >>= 8;
            if mag == 0 {
                break;
            }
        }
        let mut out = vec![bytes.len() as u8 | if v < 0 { 0x80 } else { 0 }];
        out.extend(bytes);
        out
    }

    /// dlib's `float_details` for a float (test oracle).
    fn pack_f32(v: f32) -> Vec<u8> {
        if v == 0.0 {
            let mut out = pack_signed(0);
            out.extend(pack_signed(0));
            return out;
        }
        // frexp: v = f · 2^exp with 0.5 ≤ |f| < 1; mantissa = f · 2^24.
        let bits = v.abs().to_bits();
        let (mut man, mut exp) = if bits >> 23 == 0 {
            (i64::from(bits), -149i32)
        } else {
            (
                i64::from((bits & 0x7f_ffff) | 0x80_0000),
                ((bits >> 23) as i32) - 150,
            )
        };
        while man & 0xff == 0 {
            man >>= 8;
            exp += 8;
        }
        if v < 0.0 {
            man = -man;
        }
        let mut out = pack_signed(man);
        out.extend(pack_signed(i64::from(exp)));
        out
    }

    #[test]
    fn integers() {
        // dlib writes int 1 as [1, 1], -10 as [0x81, 10], 300 as [2, 44, 1].
        let data = [1u8, 1, 0x81, 10, 2, 44, 1, 0x81, 1];
        let mut r = Reader::new(&data);
        assert_eq!(r.i32("a").unwrap(), 1);
        assert_eq!(r.i64("b").unwrap(), -10);
        assert_eq!(r.u64("c").unwrap(), 300);
        // An unsigned value with the sign bit set is invalid in dlib.
        assert!(matches!(r.u64("d"), Err(DlibError::BadInteger { .. })));
        for v in [0i64, 1, -1, 255, 256, -65536, i64::MAX, i64::MIN + 1] {
            assert_eq!(Reader::new(&pack_signed(v)).i64("v").unwrap(), v);
        }
        // Too many bytes for an int.
        assert!(Reader::new(&[5, 1, 2, 3, 4, 5]).i32("x").is_err());
        assert!(Reader::new(&[0]).i32("x").is_err());
        assert!(Reader::new(&[2, 1]).i32("x").is_err());
        assert!(matches!(
            Reader::new(&[4, 0, 0, 0, 0x80]).i32("x"),
            Err(DlibError::OutOfRange { .. })
        ));
    }

    #[test]
    fn floats() {
        // The margin of dlib's loss_metric_: 0.04 as [3 0a d7 a3][81 1c].
        let mut r = Reader::new(&[3, 0x0a, 0xd7, 0xa3, 0x81, 0x1c]);
        assert_eq!(r.f32().unwrap(), 0.04f32);
        for v in [1.0f32, -2.5, 0.1, 1e-30, -3.4e38, 1e-45, 0.0, 122.782] {
            assert_eq!(Reader::new(&pack_f32(v)).f32().unwrap(), v, "{v}");
        }
        let inf = [1u8, 0, 2, 0x00, 0x7d];
        assert_eq!(Reader::new(&inf).f32().unwrap(), f32::INFINITY);
        assert!(Reader::new(&[2, 0, 0x7d]).f64().is_err());
        assert!(matches!(
            Reader::new(b"1.5 ").f32(),
            Err(DlibError::LegacyFloat { .. })
        ));
        assert_eq!(Reader::new(&[1, 3, 0x81, 1]).f64().unwrap(), 1.5);
        assert_eq!(
            Reader::new(&[1, 1, 0x82, 0xe8, 0x03]).f64().unwrap(),
            2f64.powi(-1000)
        );
    }

    #[test]
    fn strings_bools_and_lengths() {
        let mut data = vec![1u8, 5];
        data.extend(b"relu_1x");
        let mut r = Reader::new(&data);
        assert!(r.peek_string_is("relu_"));
        r.expect_string("relu_").unwrap();
        assert!(r.bool("b").unwrap());
        assert!(matches!(r.bool("b"), Err(DlibError::BadBool { .. })));
        // A length larger than the input is rejected before allocating.
        let mut r = Reader::new(&[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(r.len(1, "v"), Err(DlibError::TooLarge { .. })));
    }

    #[test]
    fn matrices_and_tensors() {
        // Current dlib writes -rows, -cols; older files positive.
        let mut data = pack_signed(-2);
        data.extend(pack_signed(-1));
        data.extend(pack_f32(0.5));
        data.extend(pack_f32(-1.0));
        let (nr, nc, v) = Reader::new(&data).matrix_f32().unwrap();
        assert_eq!((nr, nc, v), (2, 1, vec![0.5, -1.0]));

        let mut t = vec![1u8, 2];
        for d in [1i64, 2, 1, 1] {
            t.extend(pack_signed(d));
        }
        t.extend(1.5f32.to_le_bytes());
        t.extend((-2.0f32).to_le_bytes());
        let tensor = Reader::new(&t).tensor().unwrap();
        assert_eq!(tensor.dims, [1, 2, 1, 1]);
        assert_eq!(tensor.data, vec![1.5, -2.0]);
        // Truncated data and absurd dims are errors.
        assert!(Reader::new(&t[..t.len() - 1]).tensor().is_err());
        let mut huge = vec![1u8, 2];
        for _ in 0..4 {
            huge.extend(pack_signed(i64::MAX));
        }
        assert!(matches!(
            Reader::new(&huge).tensor(),
            Err(DlibError::TooLarge { .. })
        ));
    }
}
