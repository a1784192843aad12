//! Resolves guest kernel addresses to function names with the kernel ELF's symbol table, so a
//! guest panic's backtrace reads as code, not numbers.

use crate::sys::AlignedBytes;
use xmas_elf::ElfFile;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::{Entry, Type};

/// Function symbols of a kernel image, sorted by address.
pub struct Symbols {
    funcs: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads the `.symtab` of `elf` (empty if the image has none or does not parse).
    pub fn from_elf(elf: &[u8]) -> Self {
        let aligned = AlignedBytes::new(elf);
        let mut funcs = Vec::new();
        if let Ok(file) = ElfFile::new(aligned.as_bytes())
            && let Some(section) = file.find_section_by_name(".symtab")
            && let Ok(SectionData::SymbolTable64(entries)) = section.get_data(&file)
        {
            for e in entries {
                // Functions, and assembly labels (NOTYPE, size 0) such as `_start`.
                let kind = e.get_type();
                if (kind == Ok(Type::Func) || kind == Ok(Type::NoType) && e.size() == 0)
                    && e.value() != 0
                    && let Ok(name) = e.get_name(&file)
                {
                    funcs.push((e.value(), e.size(), format!("{:#}", rustc_demangle::demangle(name))));
                }
            }
        }
        funcs.sort_unstable_by_key(|f| f.0);
        // A label without a size extends to the next symbol.
        for i in 0..funcs.len() {
            if funcs[i].1 == 0 {
                funcs[i].1 = funcs.get(i + 1).map_or(1, |next| next.0 - funcs[i].0).max(1);
            }
        }
        Self { funcs }
    }

    /// Like [`Self::lookup`] for a return address: the call is the instruction before it
    /// (which matters after calls to functions that never return, the last instruction of
    /// their caller).
    pub fn lookup_return(&self, addr: u64) -> Option<String> {
        let call = addr.checked_sub(1)?;
        let i = self.funcs.partition_point(|f| f.0 <= call).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        (call < start + size).then(|| format!("{name}+{:#x}", addr - start))
    }

    /// `function+0xoffset` for `addr`, if a function covers it.
    pub fn lookup(&self, addr: u64) -> Option<String> {
        let i = self.funcs.partition_point(|f| f.0 <= addr).checked_sub(1)?;
        let (start, size, name) = &self.funcs[i];
        (addr < start + size).then(|| format!("{name}+{:#x}", addr - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_kernel_symbols_resolve() {
        let syms = Symbols::from_elf(crate::run::EMBEDDED_KERNEL);
        assert!(syms.funcs.len() > 50, "the embedded kernel keeps its symbol table");
        let (start, _, name) = syms.funcs.iter().find(|f| f.2.contains("kmain")).expect("kmain").clone();
        assert_eq!(syms.lookup(start + 1), Some(format!("{name}+0x1")));
        assert_eq!(syms.lookup(1), None);
        // A return address just past a function's end belongs to that function.
        let (start, size, name) = syms.funcs.iter().find(|f| f.1 > 1).unwrap().clone();
        assert_eq!(syms.lookup_return(start + size), Some(format!("{name}+{size:#x}")));
        assert!(syms.lookup(start).is_some_and(|s| s.ends_with("+0x0")));
    }

    #[test]
    fn garbage_gives_no_symbols() {
        assert!(Symbols::from_elf(b"not an elf").lookup(0x1000).is_none());
    }
}
