//! The values a get-method takes and returns, as plain data that crosses
//! threads and the wire (the VM's own stack values do neither).

use num_bigint::BigInt;
use tycho_types::cell::{Cell, CellBuilder, Load};
use tycho_types::models::{IntAddr, StdAddr};

/// One entry of a TVM stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackEntry {
    /// An integer (257 bits at most on the VM).
    Int(BigInt),
    /// A cell.
    Cell(Cell),
    /// A slice: here always a whole cell, which is what get-methods pass.
    Slice(Cell),
    /// A builder, as the cell it would build.
    Builder(Cell),
    /// A tuple (lists are nested tuples).
    Tuple(Vec<StackEntry>),
    /// The null value.
    Null,
}

/// A stack entry was not what the reader expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stack entry {index}: expected {expected}, found {found}")]
pub struct StackTypeError {
    /// Position on the stack, 0 = first returned value.
    pub index: usize,
    /// What the reader wanted.
    pub expected: &'static str,
    /// What was there.
    pub found: String,
}

impl StackEntry {
    /// An address as a slice argument.
    pub fn address(addr: &StdAddr) -> Self {
        let cell = CellBuilder::build_from(addr).expect("a standard address always fits a cell");
        StackEntry::Slice(cell)
    }

    /// A short name of the entry's type, for errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            StackEntry::Int(_) => "int",
            StackEntry::Cell(_) => "cell",
            StackEntry::Slice(_) => "slice",
            StackEntry::Builder(_) => "builder",
            StackEntry::Tuple(_) => "tuple",
            StackEntry::Null => "null",
        }
    }
}

/// Reads a get-method's results in order, checking each type.
#[derive(Debug)]
pub struct StackReader {
    entries: std::vec::IntoIter<StackEntry>,
    index: usize,
}

impl StackReader {
    /// Reads `entries` from the first.
    pub fn new(entries: Vec<StackEntry>) -> Self {
        StackReader {
            entries: entries.into_iter(),
            index: 0,
        }
    }

    /// The next entry, whatever it is (`None` past the last).
    pub fn any(&mut self) -> Option<StackEntry> {
        self.index += 1;
        self.entries.next()
    }

    fn next(&mut self, expected: &'static str) -> Result<StackEntry, StackTypeError> {
        let index = self.index;
        self.index += 1;
        self.entries.next().ok_or(StackTypeError {
            index,
            expected,
            found: "nothing".into(),
        })
    }

    fn mismatch(&self, expected: &'static str, found: &StackEntry) -> StackTypeError {
        StackTypeError {
            index: self.index - 1,
            expected,
            found: found.type_name().into(),
        }
    }

    /// An integer.
    pub fn int(&mut self) -> Result<BigInt, StackTypeError> {
        match self.next("int")? {
            StackEntry::Int(v) => Ok(v),
            other => Err(self.mismatch("int", &other)),
        }
    }

    /// An integer that fits `u128` (coins, counters).
    pub fn u128(&mut self) -> Result<u128, StackTypeError> {
        let v = self.int()?;
        u128::try_from(&v).map_err(|_| StackTypeError {
            index: self.index - 1,
            expected: "an unsigned 128-bit integer",
            found: v.to_string(),
        })
    }

    /// An integer that fits `u64`.
    pub fn u64(&mut self) -> Result<u64, StackTypeError> {
        let v = self.int()?;
        u64::try_from(&v).map_err(|_| StackTypeError {
            index: self.index - 1,
            expected: "an unsigned 64-bit integer",
            found: v.to_string(),
        })
    }

    /// A cell (a slice's cell is accepted too).
    pub fn cell(&mut self) -> Result<Cell, StackTypeError> {
        match self.next("cell")? {
            StackEntry::Cell(c) | StackEntry::Slice(c) => Ok(c),
            other => Err(self.mismatch("cell", &other)),
        }
    }

    /// A standard address stored at the start of a slice.
    pub fn address(&mut self) -> Result<StdAddr, StackTypeError> {
        let cell = match self.next("address")? {
            StackEntry::Slice(c) | StackEntry::Cell(c) => c,
            other => return Err(self.mismatch("address", &other)),
        };
        let parsed = cell
            .as_slice()
            .and_then(|mut s| IntAddr::load_from(&mut s))
            .ok()
            .and_then(|a| a.as_std().cloned());
        parsed.ok_or(StackTypeError {
            index: self.index - 1,
            expected: "a standard address",
            found: "a slice that does not start with one".into(),
        })
    }

    /// Skips an entry of any type.
    pub fn skip(&mut self) -> Result<(), StackTypeError> {
        self.next("any").map(|_| ())
    }
}
