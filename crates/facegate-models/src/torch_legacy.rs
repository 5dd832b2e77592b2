//! Reader for the legacy (pre-1.6, non-zip) PyTorch serialization format.
//!
//! Such a file is five pickles back to back (magic number, protocol version,
//! sys-info, the state dict, the list of storage keys) followed by the raw
//! storages. The state dict is interpreted by a minimal pickle virtual machine
//! that knows only the protocol-2 opcodes `torch.save` emits for a plain
//! `OrderedDict` of tensors; everything else is a typed error. The input is
//! treated as hostile: every length is checked against the remaining bytes,
//! the stack, memo and object counts are capped, and nothing is ever walked
//! recursively, so no input can panic, overflow the stack or allocate more
//! than a small multiple of its own size.

use std::collections::{BTreeMap, HashMap};

/// A dense, C-contiguous float32 tensor from a state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Why a legacy PyTorch file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// The input ends inside a value (the byte is the input length).
    #[error("file ends early at byte {0}")]
    Truncated(usize),
    /// The first pickle is not the legacy magic number.
    #[error("not a legacy PyTorch file: bad magic number")]
    BadMagic,
    /// The second pickle is not protocol version 1001.
    #[error("unsupported PyTorch protocol version {0} (expected 1001)")]
    BadProtocolVersion(i64),
    /// A pickle declares a protocol other than 2.
    #[error("unsupported pickle protocol {0} (expected 2)")]
    PickleProtocol(u8),
    /// An opcode outside the subset `torch.save` uses for state dicts.
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its byte offset in the file.
        offset: usize,
    },
    /// A class or function other than the four a state dict needs.
    #[error("unsupported global {module}.{name}")]
    UnsupportedGlobal {
        /// The module the pickle names.
        module: String,
        /// The class or function within it.
        name: String,
    },
    /// A structurally invalid pickle (bad stack, wrong types, …).
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset of the opcode that failed.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// A stack, memo or object-count cap was hit.
    #[error("pickle exceeds the reader's limits: {0}")]
    Limit(&'static str),
    /// The sys-info pickle is missing or describes a big-endian file.
    #[error("sys info: {0}")]
    SysInfo(&'static str),
    /// A tensor view that is not a dense float32 slice of its storage.
    #[error("tensor {name}: {reason}")]
    BadTensor {
        /// State-dict key of the tensor.
        name: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A raw storage that disagrees with the pickled metadata.
    #[error("storage {0}: {1}")]
    BadStorage(String, &'static str),
    /// Two entries map to the same key (after stripping `module.`).
    #[error("duplicate state-dict key {0}")]
    DuplicateKey(String),
}

/// The magic number `torch.save` writes first (`0x1950a86a20f9469cfc6c`), as
/// the little-endian two's-complement bytes of pickle's `LONG1`.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

// Caps that keep hostile input cheap; real files are far below them
// (MiniFASNet: ~3,700 memo entries, stack depth < 10).
const MAX_STACK: usize = 1 << 16;
const MAX_MARKS: usize = 1 << 12;
const MAX_MEMO: usize = 1 << 20;
const MAX_OBJECTS: usize = 1 << 20;
const MAX_GLOBAL_LINE: usize = 256;
const MAX_DIMS: usize = 8;

/// Element type of a storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    I64,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }
}

/// Callables and classes the VM knows; any other `GLOBAL` is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(DType),
}

/// Index of an object in the VM's arena.
type Id = usize;

/// A pickled object. Containers refer to their items by arena index, which
/// gives Python's reference semantics (memo entries alias, mutation is
/// visible everywhere) without reference counting, cycles or recursion.
#[derive(Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// `LONG1` payload (only the magic number uses it).
    Long(Vec<u8>),
    Str(String),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Global),
    Storage {
        dtype: DType,
        key: String,
        numel: u64,
    },
    Tensor(TensorRef),
}

#[derive(Debug, Clone)]
struct TensorRef {
    storage: Id,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

/// One value on the VM stack: an object or a `MARK`.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Obj(Id),
    Mark,
}

struct Vm<'a> {
    bytes: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
}

impl<'a> Vm<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            arena: Vec::new(),
        }
    }

    fn malformed(&self, reason: &'static str) -> TorchError {
        TorchError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TorchError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(TorchError::Truncated(self.bytes.len()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, TorchError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TorchError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TorchError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TorchError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<&'a str, TorchError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let window = &rest[..rest.len().min(MAX_GLOBAL_LINE)];
        let n = window
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.malformed("GLOBAL name not newline-terminated"))?;
        let s = std::str::from_utf8(&window[..n])
            .map_err(|_| self.malformed("GLOBAL name not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn alloc(&mut self, obj: Obj) -> Result<Id, TorchError> {
        if self.arena.len() >= MAX_OBJECTS {
            return Err(TorchError::Limit("too many objects"));
        }
        self.arena.push(obj);
        Ok(self.arena.len() - 1)
    }

    fn get(&self, id: Id) -> &Obj {
        // Ids only ever come from `alloc`, so they are always in range.
        &self.arena[id]
    }

    /// Runs one pickle from the current position up to and including `STOP`
    /// and returns the object it produced.
    fn run(&mut self) -> Result<Id, TorchError> {
        let mut stack: Vec<Slot> = Vec::new();
        let mut marks = 0usize;
        let mut memo: HashMap<u32, Id> = HashMap::new();
        let mut first = true;
        loop {
            let at = self.pos;
            let op = self.u8()?;
            if first && op != 0x80 {
                return Err(self.malformed("pickle does not start with PROTO"));
            }
            first = false;
            let pushed = match op {
                // PROTO
                0x80 => {
                    let p = self.u8()?;
                    if p != 2 {
                        return Err(TorchError::PickleProtocol(p));
                    }
                    None
                }
                // STOP
                b'.' => {
                    return match (stack.pop(), stack.is_empty()) {
                        (Some(Slot::Obj(id)), true) => Ok(id),
                        _ => Err(self.malformed("STOP with a stack other than one object")),
                    };
                }
                b'(' => {
                    marks += 1;
                    if marks > MAX_MARKS {
                        return Err(TorchError::Limit("too many nested marks"));
                    }
                    stack.push(Slot::Mark);
                    None
                }
                b'N' => Some(Obj::None),
                0x88 => Some(Obj::Bool(true)),
                0x89 => Some(Obj::Bool(false)),
                // BININT1 / BININT2 / BININT
                b'K' => Some(Obj::Int(i64::from(self.u8()?))),
                b'M' => Some(Obj::Int(i64::from(self.u16()?))),
                b'J' => Some(Obj::Int(i64::from(self.u32()? as i32))),
                // LONG1
                0x8a => {
                    let n = usize::from(self.u8()?);
                    Some(Obj::Long(self.take(n)?.to_vec()))
                }
                // BINUNICODE: length bounded by `take` before any allocation.
                b'X' => {
                    let n = self.u32()? as usize;
                    let raw = self.take(n)?;
                    let s = std::str::from_utf8(raw)
                        .map_err(|_| self.malformed("string is not UTF-8"))?;
                    Some(Obj::Str(s.to_owned()))
                }
                b')' => Some(Obj::Tuple(Vec::new())),
                b']' => Some(Obj::List(Vec::new())),
                b'}' => Some(Obj::Dict(Vec::new())),
                // TUPLE1..3
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let items = self.pop_n(&mut stack, n)?;
                    Some(Obj::Tuple(items))
                }
                b't' => Some(Obj::Tuple(self.pop_to_mark(&mut stack, &mut marks)?)),
                // BINPUT / LONG_BINPUT
                b'q' | b'r' => {
                    let idx = if op == b'q' {
                        u32::from(self.u8()?)
                    } else {
                        self.u32()?
                    };
                    let top = match stack.last() {
                        Some(Slot::Obj(id)) => *id,
                        _ => return Err(self.malformed("memo put without an object")),
                    };
                    if memo.len() >= MAX_MEMO && !memo.contains_key(&idx) {
                        return Err(TorchError::Limit("memo too large"));
                    }
                    memo.insert(idx, top);
                    None
                }
                // BINGET / LONG_BINGET
                b'h' | b'j' => {
                    let idx = if op == b'h' {
                        u32::from(self.u8()?)
                    } else {
                        self.u32()?
                    };
                    let id = *memo
                        .get(&idx)
                        .ok_or_else(|| self.malformed("memo get of a missing entry"))?;
                    push(&mut stack, Slot::Obj(id))?;
                    None
                }
                // GLOBAL
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = match (module, name) {
                        ("collections", "OrderedDict") => Global::OrderedDict,
                        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
                        ("torch", "FloatStorage") => Global::Storage(DType::F32),
                        ("torch", "LongStorage") => Global::Storage(DType::I64),
                        _ => {
                            return Err(TorchError::UnsupportedGlobal {
                                module: module.into(),
                                name: name.into(),
                            })
                        }
                    };
                    Some(Obj::Global(g))
                }
                // REDUCE
                b'R' => {
                    let v = self.pop_n(&mut stack, 2)?;
                    Some(self.reduce(v[0], v[1])?)
                }
                // BINPERSID
                b'Q' => {
                    let v = self.pop_n(&mut stack, 1)?;
                    Some(self.persistent(v[0])?)
                }
                // BUILD: only the OrderedDict's `_metadata` uses it; the state
                // (module versions) is irrelevant for inference.
                b'b' => {
                    self.pop_n(&mut stack, 1)?;
                    match stack.last() {
                        Some(Slot::Obj(_)) => None,
                        _ => return Err(self.malformed("BUILD without an object")),
                    }
                }
                // SETITEM
                b's' => {
                    let kv = self.pop_n(&mut stack, 2)?;
                    let dict = self.top_obj(&stack)?;
                    match &mut self.arena[dict] {
                        Obj::Dict(items) => items.push((kv[0], kv[1])),
                        _ => return Err(self.malformed("SETITEM on a non-dict")),
                    }
                    None
                }
                // SETITEMS
                b'u' => {
                    let items = self.pop_to_mark(&mut stack, &mut marks)?;
                    if items.len() % 2 != 0 {
                        return Err(self.malformed("SETITEMS with an odd item count"));
                    }
                    let dict = self.top_obj(&stack)?;
                    match &mut self.arena[dict] {
                        Obj::Dict(d) => d.extend(items.chunks_exact(2).map(|c| (c[0], c[1]))),
                        _ => return Err(self.malformed("SETITEMS on a non-dict")),
                    }
                    None
                }
                // APPEND / APPENDS
                b'a' | b'e' => {
                    let items = if op == b'a' {
                        self.pop_n(&mut stack, 1)?
                    } else {
                        self.pop_to_mark(&mut stack, &mut marks)?
                    };
                    let list = self.top_obj(&stack)?;
                    match &mut self.arena[list] {
                        Obj::List(l) => l.extend(items),
                        _ => return Err(self.malformed("APPEND on a non-list")),
                    }
                    None
                }
                _ => {
                    return Err(TorchError::UnsupportedOpcode {
                        opcode: op,
                        offset: at,
                    })
                }
            };
            if let Some(obj) = pushed {
                let id = self.alloc(obj)?;
                push(&mut stack, Slot::Obj(id))?;
            }
        }
    }

    fn top_obj(&self, stack: &[Slot]) -> Result<Id, TorchError> {
        match stack.last() {
            Some(Slot::Obj(id)) => Ok(*id),
            _ => Err(self.malformed("expected an object on the stack")),
        }
    }

    /// Pops exactly `n` objects (no marks) and returns them bottom first.
    fn pop_n(&self, stack: &mut Vec<Slot>, n: usize) -> Result<Vec<Id>, TorchError> {
        if stack.len() < n {
            return Err(self.malformed("stack underflow"));
        }
        let items = stack.split_off(stack.len() - n);
        items
            .into_iter()
            .map(|s| match s {
                Slot::Obj(id) => Ok(id),
                Slot::Mark => Err(self.malformed("unexpected MARK")),
            })
            .collect()
    }

    /// Pops everything above the topmost mark, and the mark itself.
    fn pop_to_mark(&self, stack: &mut Vec<Slot>, marks: &mut usize) -> Result<Vec<Id>, TorchError> {
        let m = stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        *marks = marks.saturating_sub(1);
        Ok(items
            .into_iter()
            .filter_map(|s| match s {
                Slot::Obj(id) => Some(id),
                Slot::Mark => None,
            })
            .collect())
    }

    fn int(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Obj::Int(v) => Some(*v),
            _ => None,
        }
    }

    fn uint_tuple(&self, id: Id) -> Option<Vec<u64>> {
        match self.get(id) {
            Obj::Tuple(items) if items.len() <= MAX_DIMS => items
                .iter()
                .map(|&i| self.int(i).and_then(|v| u64::try_from(v).ok()))
                .collect(),
            _ => None,
        }
    }

    fn reduce(&self, callable: Id, args: Id) -> Result<Obj, TorchError> {
        let args = match self.get(args) {
            Obj::Tuple(a) => a.as_slice(),
            _ => return Err(self.malformed("REDUCE arguments are not a tuple")),
        };
        match self.get(callable) {
            Obj::Global(Global::OrderedDict) if args.is_empty() => Ok(Obj::Dict(Vec::new())),
            Obj::Global(Global::RebuildTensorV2) => {
                // (storage, storage_offset, size, stride, requires_grad, backward_hooks)
                let [storage, offset, size, stride, ..] = args else {
                    return Err(self.malformed("_rebuild_tensor_v2 needs at least 4 arguments"));
                };
                if !matches!(self.get(*storage), Obj::Storage { .. }) {
                    return Err(self.malformed("_rebuild_tensor_v2 without a storage"));
                }
                let offset = self
                    .int(*offset)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| self.malformed("bad storage offset"))?;
                let size = self
                    .uint_tuple(*size)
                    .ok_or_else(|| self.malformed("bad tensor size"))?;
                let stride = self
                    .uint_tuple(*stride)
                    .ok_or_else(|| self.malformed("bad tensor stride"))?;
                Ok(Obj::Tensor(TensorRef {
                    storage: *storage,
                    offset,
                    size,
                    stride,
                }))
            }
            _ => Err(self.malformed("REDUCE of an unsupported callable")),
        }
    }

    /// Resolves `('storage', class, key, location, numel, view_metadata)`.
    fn persistent(&self, pid: Id) -> Result<Obj, TorchError> {
        let Obj::Tuple(t) = self.get(pid) else {
            return Err(self.malformed("persistent id is not a tuple"));
        };
        let [tag, class, key, _location, numel, ..] = t.as_slice() else {
            return Err(self.malformed("persistent id too short"));
        };
        if !matches!(self.get(*tag), Obj::Str(s) if s == "storage") {
            return Err(self.malformed("persistent id is not a storage"));
        }
        let Obj::Global(Global::Storage(dtype)) = self.get(*class) else {
            return Err(self.malformed("persistent id with an unsupported storage class"));
        };
        let Obj::Str(key) = self.get(*key) else {
            return Err(self.malformed("storage key is not a string"));
        };
        let numel = self
            .int(*numel)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| self.malformed("bad storage element count"))?;
        Ok(Obj::Storage {
            dtype: *dtype,
            key: key.clone(),
            numel,
        })
    }
}

fn push(stack: &mut Vec<Slot>, slot: Slot) -> Result<(), TorchError> {
    if stack.len() >= MAX_STACK {
        return Err(TorchError::Limit("pickle stack too deep"));
    }
    stack.push(slot);
    Ok(())
}

/// Reads a legacy PyTorch state dict. Keys lose a leading `module.`
/// (DataParallel); int64 `num_batches_tracked` counters are skipped.
pub fn read_state_dict(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, TorchError> {
    let mut vm = Vm::new(bytes);

    let magic = vm.run().map_err(|_| TorchError::BadMagic)?;
    if !matches!(vm.get(magic), Obj::Long(b) if b.as_slice() == MAGIC) {
        return Err(TorchError::BadMagic);
    }
    let version = vm.run()?;
    match vm.int(version) {
        Some(PROTOCOL_VERSION) => {}
        Some(v) => return Err(TorchError::BadProtocolVersion(v)),
        None => return Err(TorchError::BadProtocolVersion(-1)),
    }
    let info = vm.run()?;
    check_sys_info(&vm, info)?;

    let dict = vm.run()?;
    let keys = vm.run()?;
    let Obj::List(keys) = vm.get(keys) else {
        return Err(vm.malformed("storage key list is not a list"));
    };

    // The raw storages follow in key-list order: int64 count, then elements.
    let mut storages: HashMap<&str, (DType, &[u8])> = HashMap::new();
    let mut dtypes: HashMap<&str, (DType, u64)> = HashMap::new();
    let Obj::Dict(items) = vm.get(dict) else {
        return Err(vm.malformed("state dict is not a dict"));
    };
    for &(_, v) in items {
        if let Obj::Tensor(t) = vm.get(v) {
            if let Obj::Storage { dtype, key, numel } = vm.get(t.storage) {
                dtypes.insert(key.as_str(), (*dtype, *numel));
            }
        }
    }
    let mut reader = Vm::new(bytes);
    reader.pos = vm.pos;
    for &k in keys {
        let Obj::Str(key) = vm.get(k) else {
            return Err(vm.malformed("storage key is not a string"));
        };
        let &(dtype, numel) = dtypes
            .get(key.as_str())
            .ok_or_else(|| TorchError::BadStorage(key.clone(), "not referenced by any tensor"))?;
        let count = reader.u64()?;
        if count != numel {
            return Err(TorchError::BadStorage(
                key.clone(),
                "element count disagrees with the pickle",
            ));
        }
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size()))
            .ok_or(TorchError::BadStorage(key.clone(), "too large"))?;
        let raw = reader.take(len)?;
        if storages.insert(key.as_str(), (dtype, raw)).is_some() {
            return Err(TorchError::BadStorage(key.clone(), "listed twice"));
        }
    }

    let mut out = BTreeMap::new();
    for &(k, v) in items {
        let Obj::Str(raw_name) = vm.get(k) else {
            return Err(vm.malformed("state-dict key is not a string"));
        };
        let name = raw_name
            .strip_prefix("module.")
            .unwrap_or(raw_name)
            .to_owned();
        let Obj::Tensor(t) = vm.get(v) else {
            return Err(TorchError::BadTensor {
                name,
                reason: "value is not a tensor".into(),
            });
        };
        let Obj::Storage { key, .. } = vm.get(t.storage) else {
            return Err(vm.malformed("tensor without storage"));
        };
        let &(dtype, raw) = storages
            .get(key.as_str())
            .ok_or_else(|| TorchError::BadStorage(key.clone(), "missing from the storage list"))?;
        if dtype == DType::I64 {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            return Err(TorchError::BadTensor {
                name,
                reason: "int64 tensors are not supported".into(),
            });
        }
        let tensor = slice_tensor(&name, t, raw)?;
        if out.insert(name.clone(), tensor).is_some() {
            return Err(TorchError::DuplicateKey(name));
        }
    }
    Ok(out)
}

/// Checks the sys-info dict: the storages must be little-endian.
fn check_sys_info(vm: &Vm<'_>, info: Id) -> Result<(), TorchError> {
    let Obj::Dict(items) = vm.get(info) else {
        return Err(TorchError::SysInfo("not a dict"));
    };
    let little = items
        .iter()
        .find_map(|&(k, v)| match (vm.get(k), vm.get(v)) {
            (Obj::Str(s), Obj::Bool(b)) if s == "little_endian" => Some(*b),
            _ => None,
        });
    match little {
        Some(true) => Ok(()),
        Some(false) => Err(TorchError::SysInfo("big-endian files are not supported")),
        None => Err(TorchError::SysInfo("little_endian missing")),
    }
}

/// Copies a C-contiguous float32 view out of its storage bytes.
fn slice_tensor(name: &str, t: &TensorRef, raw: &[u8]) -> Result<Tensor, TorchError> {
    let bad = |reason: &str| TorchError::BadTensor {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if t.size.len() != t.stride.len() {
        return Err(bad("size and stride ranks differ"));
    }
    let mut expected = 1u64;
    for (&d, &s) in t.size.iter().zip(&t.stride).rev() {
        if d > 1 && s != expected {
            return Err(bad("not C-contiguous"));
        }
        expected = expected
            .checked_mul(d)
            .ok_or_else(|| bad("size overflows"))?;
    }
    let numel = expected;
    let available = (raw.len() / 4) as u64;
    let end = t
        .offset
        .checked_add(numel)
        .ok_or_else(|| bad("offset overflows"))?;
    if end > available {
        return Err(bad("view runs past its storage"));
    }
    // In range: end <= raw.len() / 4, which fits usize.
    let bytes = &raw[t.offset as usize * 4..end as usize * 4];
    let data = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let shape = t.size.iter().map(|&d| d as usize).collect();
    Ok(Tensor { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(matches!(read_state_dict(&[]), Err(TorchError::BadMagic)));
        assert!(read_state_dict(b"\x80\x02\x8a\x0a").is_err());
        assert!(read_state_dict(b"PK\x03\x04zipfile").is_err());
    }

    #[test]
    fn stack_and_marks_are_capped() {
        let mut deep = vec![0x80, 0x02];
        deep.extend(std::iter::repeat_n(b'(', MAX_MARKS + 10));
        let mut vm = Vm::new(&deep);
        assert!(matches!(vm.run(), Err(TorchError::Limit(_))));

        let mut wide = vec![0x80, 0x02];
        wide.extend(std::iter::repeat_n(b'N', MAX_STACK + 10));
        let mut vm = Vm::new(&wide);
        assert!(matches!(vm.run(), Err(TorchError::Limit(_))));
    }

    #[test]
    fn huge_lengths_are_bounded_by_the_input() {
        // BINUNICODE claiming 4 GiB.
        let mut vm = Vm::new(b"\x80\x02X\xff\xff\xff\xff");
        assert!(matches!(vm.run(), Err(TorchError::Truncated(_))));
    }

    #[test]
    fn unknown_globals_are_rejected() {
        let mut vm = Vm::new(b"\x80\x02cos\nsystem\n.");
        assert!(matches!(
            vm.run(),
            Err(TorchError::UnsupportedGlobal { .. })
        ));
    }

    #[test]
    fn memo_aliases_like_python() {
        // (mark, [] put 0, get 0, append 1, tuple): both tuple items are the
        // same list, and it holds the appended item.
        let mut vm = Vm::new(b"\x80\x02(]q\x00h\x00K\x01at.");
        let id = vm.run().unwrap();
        let Obj::Tuple(items) = vm.get(id) else {
            panic!("not a tuple")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0], items[1]);
        assert!(matches!(vm.get(items[0]), Obj::List(l) if l.len() == 1));
    }
}
