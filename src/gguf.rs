//! Layer 1: GGUF file reading and dequantization.
//!
//! Reads GGUF versions 2 and 3 from a byte slice that the caller has loaded (a file natively, an
//! `ArrayBuffer` in the browser). Every read is bounds-checked against the slice, and every count
//! read from the header is checked against the bytes that could possibly hold it before anything is
//! allocated, so a hostile header cannot make the reader allocate more than the file's own size.
//!
//! Layout facts (see `../shared/reference/smollm2/README.md`): a tensor with `ne = [ne0, ne1]` is `ne1`
//! rows of `ne0` columns, quantized along `ne0` in blocks of 32.

use std::collections::BTreeMap;
use std::fmt;

use half::{bf16, f16};

/// The magic bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays inside arrays that the reader accepts.
const MAX_ARRAY_DEPTH: usize = 4;
/// ggml supports at most four dimensions.
const MAX_DIMS: u32 = 4;

/// Everything that can be wrong with a GGUF file, each naming the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic bytes {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file truncated: {what} needs {needed} bytes at offset {offset}, but the file has {len}")]
    Truncated { what: String, offset: u64, needed: u64, len: u64 },
    #[error("{what} count {count} is impossible: only {available} bytes remain in the file (truncated or corrupt)")]
    ImpossibleCount { what: String, count: u64, available: u64 },
    #[error("metadata string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: u64 },
    #[error("unknown metadata value type {value_type} for key {key:?}")]
    UnknownValueType { key: String, value_type: u32 },
    #[error("metadata arrays nested deeper than {MAX_ARRAY_DEPTH} levels (key {key:?})")]
    ArrayTooDeep { key: String },
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("general.alignment = {0} is not a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor {name:?} has {n_dims} dimensions (at most {MAX_DIMS} are allowed)")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor {name:?} has an invalid shape {dims:?}")]
    BadShape { name: String, dims: Vec<u64> },
    #[error("tensor {name:?} has unknown ggml type {ggml_type}")]
    UnknownTensorType { name: String, ggml_type: u32 },
    #[error("tensor {name:?} has type {ggml_type}, which this reader cannot dequantize (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K)")]
    UnsupportedTensorType { name: String, ggml_type: GgmlType },
    #[error("tensor {name:?}: row length {row_len} is not a multiple of the {ggml_type} block size {block}")]
    RowNotBlockAligned { name: String, ggml_type: GgmlType, row_len: u64, block: u64 },
    #[error("tensor {name:?} data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor { name: String, offset: u64, alignment: u64 },
    #[error("tensor {name:?} data [{start}, {end}) lies outside the file ({len} bytes)")]
    TensorOutOfBounds { name: String, start: u64, end: u64, len: u64 },
    #[error("no tensor named {0:?}")]
    MissingTensor(String),
    #[error("metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
}

pub type Result<T> = std::result::Result<T, GgufError>;

/// The ggml tensor types (values as in ggml.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// A type id that exists in ggml but that this reader only knows by number.
    Other(u32),
}

impl GgmlType {
    /// Map a ggml type id; ids that were never assigned (or were removed) are `None`.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            16..=23 | 29 | 31 | 34 | 35 | 39 => Self::Other(id),
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            28 => Self::F64,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block) where the layout is known.
    pub fn block_layout(self) -> Option<(u64, u64)> {
        Some(match self {
            Self::F32 | Self::I32 => (1, 4),
            Self::F16 | Self::BF16 | Self::I16 => (1, 2),
            Self::I8 => (1, 1),
            Self::I64 | Self::F64 => (1, 8),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::Q2K => (256, 84),
            Self::Q3K => (256, 110),
            Self::Q4K => (256, 144),
            Self::Q5K => (256, 176),
            Self::Q6K => (256, 210),
            Self::Q8K => (256, 292),
            Self::Other(_) => return None,
        })
    }

    /// Whether tensors of this type can be loaded (F32 as is, the others dequantized or kept as
    /// blocks).
    pub fn can_load(self) -> bool {
        self == Self::F32 || self.can_dequantize()
    }

    fn can_dequantize(self) -> bool {
        matches!(self, Self::F16 | Self::BF16) || crate::quant::QType::from_ggml(self).is_some()
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Q2K => f.write_str("Q2_K"),
            Self::Q3K => f.write_str("Q3_K"),
            Self::Q4K => f.write_str("Q4_K"),
            Self::Q5K => f.write_str("Q5_K"),
            Self::Q6K => f.write_str("Q6_K"),
            Self::Q8K => f.write_str("Q8_K"),
            Self::Other(id) => write!(f, "ggml type #{id}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
        }
    }

    /// Any integer type that fits a non-negative u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer or float type, as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
}

/// One tensor's header entry, with its data range resolved to absolute file offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file (None when the type's layout is unknown).
    pub start: u64,
    /// Byte length of the data, when the type's layout is known.
    pub byte_len: Option<u64>,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The shape in row-major (outermost first) order, as burn and numpy write it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    bytes: &'a [u8],
    pub version: u32,
    pub alignment: u64,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the tensor data section.
    pub data_start: u64,
}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.bytes.len() as u64,
            });
        }
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items, each at least `min_item_bytes` long, that must fit in what is left.
    fn count(&mut self, what: &str, min_item_bytes: u64) -> Result<u64> {
        let count = self.u64(&format!("{what} count"))?;
        let available = self.remaining();
        if count.saturating_mul(min_item_bytes.max(1)) > available {
            return Err(GgufError::ImpossibleCount { what: what.to_string(), count, available });
        }
        Ok(count)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(&format!("{what} length"))?;
        let offset = self.pos as u64;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::InvalidUtf8 { offset })
    }

    fn value(&mut self, key: &str, value_type: u32, depth: usize) -> Result<Value> {
        Ok(match value_type {
            0 => Value::U8(self.u8(key)?),
            1 => Value::I8(self.u8(key)? as i8),
            2 => Value::U16(self.u16(key)?),
            3 => Value::I16(self.u16(key)? as i16),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => Value::Bool(self.u8(key)? != 0),
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::ArrayTooDeep { key: key.to_string() });
                }
                let item_type = self.u32(key)?;
                let min = min_value_size(item_type)
                    .ok_or(GgufError::UnknownValueType { key: key.to_string(), value_type: item_type })?;
                let n = self.count(&format!("array {key:?} item"), min)?;
                // an item takes as little as one byte in the file but a whole `Value` here: grow
                // as items are read instead of reserving for all of them on trust
                let mut items = Vec::with_capacity((n as usize).min(4096));
                for _ in 0..n {
                    items.push(self.value(key, item_type, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            _ => return Err(GgufError::UnknownValueType { key: key.to_string(), value_type }),
        })
    }
}

/// The fewest bytes a value of this type can occupy.
fn min_value_size(value_type: u32) -> Option<u64> {
    Some(match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

impl<'a> Gguf<'a> {
    /// Parse the header, metadata and tensor infos. Tensor data is only checked for bounds here;
    /// it is decoded by [`Gguf::tensor_f32`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.array::<4>("magic")?;
        if &magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        // A tensor info is at least: name length (8), n_dims (4), type (4), offset (8).
        let n_tensors = c.u64("tensor count")?;
        // A metadata pair is at least: key length (8), value type (4), one byte of value.
        let n_kv = c.count("metadata", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let value_type = c.u32("metadata value type")?;
            let value = c.value(&key, value_type, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::DuplicateKey(key));
            }
        }
        let available = c.remaining();
        if n_tensors.saturating_mul(24) > available {
            return Err(GgufError::ImpossibleCount { what: "tensor".into(), count: n_tensors, available });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                Some(a) => return Err(GgufError::BadAlignment(a)),
                None => {
                    return Err(GgufError::WrongType {
                        key: "general.alignment".into(),
                        expected: "unsigned integer",
                        found: v.type_name(),
                    })
                }
            },
        };

        struct Raw {
            name: String,
            dims: Vec<u64>,
            ggml_type: GgmlType,
            offset: u64,
        }
        let mut raws = Vec::with_capacity(n_tensors as usize);
        let mut names = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32("tensor dimension count")?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::TooManyDims { name, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64("tensor dimension")?);
            }
            let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            if n_dims == 0 || dims.contains(&0) || n_elements.is_none() {
                return Err(GgufError::BadShape { name, dims });
            }
            let type_id = c.u32("tensor type")?;
            let ggml_type =
                GgmlType::from_id(type_id).ok_or(GgufError::UnknownTensorType { name: name.clone(), ggml_type: type_id })?;
            let offset = c.u64("tensor offset")?;
            if offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor { name, offset, alignment });
            }
            if !names.insert(name.clone()) {
                return Err(GgufError::DuplicateTensor(name));
            }
            raws.push(Raw { name, dims, ggml_type, offset });
        }
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let len = bytes.len() as u64;

        let mut tensors = Vec::with_capacity(raws.len());
        for Raw { name, dims, ggml_type, offset } in raws {
            let start = data_start.saturating_add(offset);
            let byte_len = match ggml_type.block_layout() {
                None => None,
                Some((block, block_bytes)) => {
                    let row_len = dims[0];
                    if row_len % block != 0 {
                        return Err(GgufError::RowNotBlockAligned { name, ggml_type, row_len, block });
                    }
                    let n: u64 = dims.iter().product();
                    let byte_len = (n / block).checked_mul(block_bytes);
                    let end = byte_len.and_then(|b| start.checked_add(b));
                    match end {
                        Some(end) if end <= len => byte_len,
                        _ => {
                            return Err(GgufError::TensorOutOfBounds {
                                name,
                                start,
                                end: end.unwrap_or(u64::MAX),
                                len,
                            })
                        }
                    }
                }
            };
            if start > len {
                return Err(GgufError::TensorOutOfBounds { name, start, end: start, len });
            }
            tensors.push(TensorInfo { name, dims, ggml_type, start, byte_len });
        }
        Ok(Self { bytes, version, alignment, metadata, tensors, data_start })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or(GgufError::WrongType { key: key.into(), expected: "unsigned integer", found: v.type_name() })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64().ok_or(GgufError::WrongType { key: key.into(), expected: "number", found: v.type_name() })
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            v => Err(GgufError::WrongType { key: key.into(), expected: "string", found: v.type_name() }),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(GgufError::WrongType { key: key.into(), expected: "array", found: v.type_name() }),
        }
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(GgufError::WrongType { key: key.into(), expected: "array of strings", found: v.type_name() }),
            })
            .collect()
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// The raw bytes of a tensor (bounds were checked at parse time).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&'a [u8]> {
        let unsupported = || GgufError::UnsupportedTensorType { name: info.name.clone(), ggml_type: info.ggml_type };
        let len = info.byte_len.ok_or_else(unsupported)?;
        // Re-check: a TensorInfo may have been built by hand rather than by `parse`.
        let end = info.start.checked_add(len).filter(|&e| e <= self.bytes.len() as u64).ok_or_else(|| {
            GgufError::TensorOutOfBounds {
                name: info.name.clone(),
                start: info.start,
                end: info.start.saturating_add(len),
                len: self.bytes.len() as u64,
            }
        })?;
        Ok(&self.bytes[info.start as usize..end as usize])
    }

    /// Dequantize a tensor to f32, in file order (row-major with `dims[0]` innermost).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.tensor(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedTensorType { name: info.name.clone(), ggml_type: info.ggml_type });
        }
        let raw = self.tensor_bytes(info)?;
        Ok((dequantize(info.ggml_type, raw, info.n_elements() as usize), info.shape()))
    }
}

/// Dequantize `n` elements of `ty` from `raw` (which must hold exactly their blocks). The block
/// layouts live in [`crate::quant`]. Types that cannot be dequantized yield an empty vector; callers
/// check `can_dequantize` first.
pub fn dequantize(ty: GgmlType, raw: &[u8], n: usize) -> Vec<f32> {
    let f16_at = |b: &[u8]| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    match ty {
        GgmlType::F16 => raw.chunks_exact(2).take(n).map(f16_at).collect(),
        GgmlType::BF16 => raw.chunks_exact(2).take(n).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect(),
        _ => match crate::quant::QType::from_ggml(ty) {
            Some(q) if n % q.block().0 == 0 && raw.len() >= q.row_bytes(n) => {
                let mut out = vec![0.0; n];
                crate::quant::dequant_row(q, &raw[..q.row_bytes(n)], &mut out);
                out
            }
            _ => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_1_block_layout() {
        // d = 0.5, m = -1.0, nibbles: low j, high 15-j
        let mut block = Vec::new();
        block.extend(f16::from_f32(0.5).to_bits().to_le_bytes());
        block.extend(f16::from_f32(-1.0).to_bits().to_le_bytes());
        for j in 0..16u8 {
            block.push(j | ((15 - j) << 4));
        }
        let y = dequantize(GgmlType::Q4_1, &block, 32);
        for j in 0..16 {
            assert_eq!(y[j], j as f32 * 0.5 - 1.0);
            assert_eq!(y[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn q8_0_and_q4_0_block_layout() {
        let mut block = Vec::new();
        block.extend(f16::from_f32(0.25).to_bits().to_le_bytes());
        for j in 0..32i8 {
            block.push((j - 16) as u8);
        }
        let y = dequantize(GgmlType::Q8_0, &block, 32);
        assert_eq!(y, (0..32).map(|j| (j - 16) as f32 * 0.25).collect::<Vec<_>>());

        let mut block = Vec::new();
        block.extend(f16::from_f32(2.0).to_bits().to_le_bytes());
        for j in 0..16u8 {
            block.push(j | (j << 4));
        }
        let y = dequantize(GgmlType::Q4_0, &block, 32);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 2.0);
            assert_eq!(y[j + 16], (j as f32 - 8.0) * 2.0);
        }
    }
}
