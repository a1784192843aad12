use super::*;
use alloc::vec;

/// One program header for [`elf_image`]: type, flags, offset, vaddr, filesz, memsz.
type Ph = (u32, u32, u64, u64, u64, u64);

/// A minimal x86-64 ELF image: the header, the program headers right after it, and zero
/// bytes up to `len`.
fn elf_image(e_type: u16, entry: u64, phdrs: &[Ph], len: usize) -> Vec<u8> {
    let mut img = vec![0u8; len.max(64 + 56 * phdrs.len())];
    img[..4].copy_from_slice(b"\x7fELF");
    img[4] = 2; // ELFCLASS64
    img[5] = 1; // little endian
    img[6] = 1; // EV_CURRENT
    img[16..18].copy_from_slice(&e_type.to_le_bytes());
    img[18..20].copy_from_slice(&62u16.to_le_bytes());
    img[20..24].copy_from_slice(&1u32.to_le_bytes());
    img[24..32].copy_from_slice(&entry.to_le_bytes());
    img[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    img[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    img[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    img[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
    for (i, &(ty, flags, off, vaddr, filesz, memsz)) in phdrs.iter().enumerate() {
        let p = &mut img[64 + 56 * i..64 + 56 * (i + 1)];
        p[0..4].copy_from_slice(&ty.to_le_bytes());
        p[4..8].copy_from_slice(&flags.to_le_bytes());
        p[8..16].copy_from_slice(&off.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[24..32].copy_from_slice(&vaddr.to_le_bytes());
        p[32..40].copy_from_slice(&filesz.to_le_bytes());
        p[40..48].copy_from_slice(&memsz.to_le_bytes());
        p[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    }
    img
}

const RX: u32 = PF_R | PF_X;
const RW: u32 = PF_R | PF_W;

/// A plausible static executable: text at 0x400000 (holding the headers), data+bss above.
fn static_exec() -> Vec<u8> {
    elf_image(
        ET_EXEC,
        0x401000,
        &[(PT_LOAD, RX, 0, 0x400000, 0x1800, 0x1800), (PT_LOAD, RW, 0x1800, 0x402800, 0x100, 0x3000)],
        0x1900,
    )
}

#[test]
fn parses_a_static_executable() {
    let plan = parse_elf(&static_exec()).unwrap();
    assert_eq!(plan.entry, 0x401000);
    assert!(!plan.is_pie && !plan.stack_exec);
    assert_eq!((plan.phent, plan.phnum), (56, 2));
    assert_eq!(plan.phdr_vaddr, 0x400040, "computed from the PT_LOAD holding e_phoff");
    assert_eq!(plan.segments.len(), 2);
    let text = plan.segments[0];
    assert_eq!(text.prot, Prot { read: true, write: false, exec: true });
    assert_eq!((text.page_start(), text.page_end()), (0x400000, 0x402000));
    let data = plan.segments[1];
    assert_eq!(data.prot, Prot { read: true, write: true, exec: false });
    assert_eq!(data.file_range(), 0x1800..0x1900);
    assert_eq!((data.page_start(), data.page_end()), (0x402000, 0x406000));
    assert_eq!(data.zero_range(), 0x402900..0x406000);
    assert_eq!(plan.end(), 0x405800);
    assert_eq!(plan.default_bias(), 0);
    assert_eq!(plan.with_bias(0).unwrap(), plan);
    assert_eq!(plan.auxv()[0], (AT_PHDR, 0x400040));
    assert_eq!(plan.auxv()[4], (AT_ENTRY, 0x401000));
}

#[test]
fn pt_phdr_and_gnu_stack_are_honoured() {
    let img = elf_image(
        ET_EXEC,
        0x401000,
        &[
            (PT_PHDR, PF_R, 64, 0x400040, 112 + 56, 112 + 56),
            (PT_LOAD, RX, 0, 0x400000, 0x1000, 0x1000),
            (PT_GNU_STACK, RW | PF_X, 0, 0, 0, 0),
        ],
        0x1000,
    );
    let plan = parse_elf(&img).unwrap();
    assert_eq!(plan.phdr_vaddr, 0x400040);
    assert!(plan.stack_exec);
    // The phdrs are not inside any PT_LOAD and there is no PT_PHDR: AT_PHDR is 0.
    let img = elf_image(ET_EXEC, 0x401000, &[(PT_LOAD, RX, 0x1000, 0x401000, 0x10, 0x10)], 0x1010);
    assert_eq!(parse_elf(&img).unwrap().phdr_vaddr, 0);
}

#[test]
fn static_pie_is_moved_by_its_bias() {
    let img = elf_image(
        ET_DYN,
        0x1040,
        &[(PT_LOAD, RX, 0, 0, 0x1800, 0x1800), (PT_LOAD, RW, 0x1800, 0x2800, 0x100, 0x200)],
        0x1900,
    );
    let plan = parse_elf(&img).unwrap();
    assert!(plan.is_pie);
    assert_eq!(plan.phdr_vaddr, 0x40);
    let bias = plan.default_bias();
    assert_eq!(bias, PIE_LOAD_BASE);
    let moved = plan.with_bias(bias).unwrap();
    assert_eq!(moved.entry, PIE_LOAD_BASE + 0x1040);
    assert_eq!(moved.phdr_vaddr, PIE_LOAD_BASE + 0x40);
    assert_eq!(moved.segments[1].vaddr, PIE_LOAD_BASE + 0x2800);
    assert_eq!(moved.segments[1].file_offset, 0x1800);
    assert_eq!(plan.with_bias(0x123), Err(Errno::EINVAL));
    assert_eq!(plan.with_bias(USER_END), Err(Errno::ENOMEM));
    assert_eq!(plan.with_bias(0), Err(Errno::ENOMEM), "page 0 is below mmap_min_addr");
}

#[test]
fn refuses_what_is_not_a_static_x86_64_executable() {
    let good = static_exec();
    let with = |at: usize, bytes: &[u8]| {
        let mut img = good.clone();
        img[at..at + bytes.len()].copy_from_slice(bytes);
        ElfPlan::parse(&img)
    };
    assert_eq!(ElfPlan::parse(b"#!/bin/sh\n"), Err(ElfError::NotElf));
    assert_eq!(ElfPlan::parse(b""), Err(ElfError::NotElf));
    assert_eq!(ElfPlan::parse(&good[..40]), Err(ElfError::Malformed("file shorter than the ELF header")));
    assert_eq!(with(4, &[1]), Err(ElfError::Not64Bit));
    assert_eq!(with(5, &[2]), Err(ElfError::NotLittleEndian));
    assert!(matches!(with(6, &[0]), Err(ElfError::Malformed(_))), "bad version");
    assert_eq!(with(18, &183u16.to_le_bytes()), Err(ElfError::WrongMachine(183)));
    assert_eq!(with(16, &1u16.to_le_bytes()), Err(ElfError::NotExecutable(1)));
    assert!(matches!(with(54, &[32]), Err(ElfError::Malformed(_))), "e_phentsize");
    assert!(matches!(with(56, &[0]), Err(ElfError::Malformed(_))), "no program headers");
    assert!(matches!(with(32, &0x18c0u64.to_le_bytes()), Err(ElfError::Malformed(_))), "phdrs past the end");
    assert!(matches!(with(32, &u64::MAX.to_le_bytes()), Err(ElfError::Malformed(_))), "phoff overflows");
    for e in [ElfError::NotElf, ElfError::NeedsInterpreter, ElfError::Malformed("x")] {
        assert_eq!(Errno::from(e), Errno::ENOEXEC);
    }
    assert_eq!(parse_elf(b"junk"), Err(Errno::ENOEXEC));
}

#[test]
fn refuses_dynamic_executables_distinguishably() {
    let img = elf_image(
        ET_DYN,
        0x1000,
        &[(PT_INTERP, PF_R, 0x200, 0x200, 28, 28), (PT_LOAD, RX, 0, 0, 0x1000, 0x1000)],
        0x1000,
    );
    assert_eq!(ElfPlan::parse(&img), Err(ElfError::NeedsInterpreter));
    assert_eq!(parse_elf(&img), Err(Errno::ENOEXEC));
    assert!(alloc::format!("{}", ElfError::NeedsInterpreter).contains("PT_INTERP"));
}

#[test]
fn refuses_impossible_segments() {
    let one = |ph: Ph| ElfPlan::parse(&elf_image(ET_EXEC, 0x401000, &[ph], 0x2000));
    let bad = |r: Result<ElfPlan, ElfError>| matches!(r, Err(e @ ElfError::BadSegment(_)) if e.errno() == Errno::EINVAL);
    assert!(bad(one((PT_LOAD, RX, 0, 0x400000, 0x200, 0x100))), "filesz > memsz");
    assert!(bad(one((PT_LOAD, RX, 0x1000, 0x400000, 0x1001, 0x2000))), "past end of file");
    assert!(bad(one((PT_LOAD, RX, u64::MAX, 0x400000, 2, 2))), "offset overflow");
    assert!(bad(one((PT_LOAD, RX, 0, USER_END - 0x10, 0x100, 0x100))), "beyond the user half");
    assert!(bad(one((PT_LOAD, RX, 0, u64::MAX - 0x10, 0x100, 0x100))), "vaddr overflow");
    assert!(bad(one((PT_LOAD, RX, 0, 0x1000, 0x100, 0x100))), "below mmap_min_addr");
    let two = |a: Ph, b: Ph| ElfPlan::parse(&elf_image(ET_EXEC, 0x401000, &[a, b], 0x2000));
    assert!(bad(two((PT_LOAD, RX, 0, 0x400000, 0x100, 0x1000), (PT_LOAD, RW, 0x100, 0x400800, 0x10, 0x10))));
    assert!(bad(two((PT_LOAD, RX, 0, 0x500000, 0x100, 0x100), (PT_LOAD, RW, 0x100, 0x400000, 0x10, 0x10))));
    assert!(ok_sharing_a_page());
    assert_eq!(
        ElfPlan::parse(&elf_image(ET_EXEC, 0, &[(elf::abi::PT_NOTE, PF_R, 0, 0, 0, 0)], 0x100)),
        Err(ElfError::NoLoadSegments)
    );
}

/// Two segments meeting inside one page are fine.
fn ok_sharing_a_page() -> bool {
    let img = elf_image(
        ET_EXEC,
        0x400100,
        &[(PT_LOAD, RX, 0, 0x400000, 0x800, 0x800), (PT_LOAD, RW, 0x800, 0x400800, 0x10, 0x100)],
        0x1000,
    );
    let plan = parse_elf(&img).unwrap();
    plan.segments[0].page_end() == 0x401000 && plan.segments[1].page_start() == 0x400000
}

#[test]
fn parses_the_real_busybox() {
    let Ok(image) = std::fs::read("/bin/busybox") else {
        panic!("/bin/busybox is missing: install Debian's busybox-static (make setup does)");
    };
    let plan = match ElfPlan::parse(&image) {
        Err(ElfError::NeedsInterpreter) => {
            panic!("/bin/busybox is dynamically linked: install Debian's busybox-static (make setup does)")
        }
        other => other.unwrap(),
    };
    let phoff = u64::from_le_bytes(image[32..40].try_into().unwrap());
    let phnum = u16::from_le_bytes(image[56..58].try_into().unwrap());
    assert_eq!((plan.phent, plan.phnum), (56, phnum));
    assert!(plan.segments.len() >= 2);
    let first = plan.segments[0];
    assert_eq!(plan.phdr_vaddr, first.vaddr + phoff - first.file_offset);
    assert!(
        plan.segments.iter().any(|s| s.prot.exec && (s.vaddr..s.vaddr + s.memsz).contains(&plan.entry)),
        "the entry point is in an executable segment"
    );
    assert!(plan.segments.iter().any(|s| s.prot.write && s.memsz > s.filesz), "a data segment with bss");
    for s in &plan.segments {
        assert!(s.file_range().end <= image.len());
        assert_eq!(s.vaddr % PAGE_SIZE, s.file_offset % PAGE_SIZE, "mmap-congruent");
    }
    assert!(!plan.stack_exec);
    if !plan.is_pie {
        assert_eq!(first.page_start(), 0x400000);
    }
}

#[test]
fn shebang_lines() {
    let parse = |s: &[u8]| parse_shebang(s).map(|r| r.map(|sb| (sb.interp, sb.arg)));
    let ok = |i: &[u8], a: Option<&[u8]>| Some(Ok((i.to_vec(), a.map(<[u8]>::to_vec))));
    assert_eq!(parse(b"\x7fELF"), None);
    assert_eq!(parse(b"# comment\n"), None);
    assert_eq!(parse(b"#!/bin/sh\necho hi\n"), ok(b"/bin/sh", None));
    assert_eq!(parse(b"#! /bin/sh  \n"), ok(b"/bin/sh", None));
    assert_eq!(parse(b"#!/bin/sh"), ok(b"/bin/sh", None), "no newline, short file");
    assert_eq!(parse(b"#!\t/usr/bin/env  python3 -u \t\nx"), ok(b"/usr/bin/env", Some(b"python3 -u")));
    assert_eq!(parse(b"#!/bin/busybox sh\r\n"), ok(b"/bin/busybox", Some(b"sh\r")), "CR is not a blank");
    assert_eq!(parse(b"#!/bin/sh\0ignored\n"), ok(b"/bin/sh", None));
    assert_eq!(parse(b"#!/bin/sh -e\0x\n"), ok(b"/bin/sh", Some(b"-e")));
    assert_eq!(parse(b"#!\n"), Some(Err(Errno::ENOEXEC)));
    assert_eq!(parse(b"#!   \t\n"), Some(Err(Errno::ENOEXEC)));
    assert_eq!(parse(b"#!"), Some(Err(Errno::ENOEXEC)));

    // A line longer than the 256-byte window.
    let mut long = b"#!/".to_vec();
    long.extend(core::iter::repeat_n(b'a', 300));
    long.push(b'\n');
    assert_eq!(parse(&long), Some(Err(Errno::ENOEXEC)), "interpreter path cut short");
    let mut long_arg = b"#!/bin/sh ".to_vec();
    long_arg.extend(core::iter::repeat_n(b'x', 300));
    let Some(Ok((interp, Some(arg)))) = parse(&long_arg) else { panic!("long argument") };
    assert_eq!(interp, b"/bin/sh");
    assert_eq!(arg.len(), 255 - 10, "the argument is cut at the window");
    // A newline exactly at the last byte of the window still ends the line.
    let mut edge = b"#!/".to_vec();
    edge.extend(core::iter::repeat_n(b'b', 252));
    edge.push(b'\n');
    assert_eq!(edge.len(), 256);
    assert!(matches!(parse(&edge), Some(Ok((i, None))) if i.len() == 253));
}

#[test]
fn shebang_argv() {
    let sb = Shebang { interp: b"/bin/sh".to_vec(), arg: Some(b"-e".to_vec()) };
    let argv = sb.argv(b"./script", &[b"script", b"x", b"y"]);
    assert_eq!(argv, [&b"/bin/sh"[..], b"-e", b"./script", b"x", b"y"]);
    let sb = Shebang { arg: None, ..sb };
    assert_eq!(sb.argv(b"/s", &[]), [&b"/bin/sh"[..], b"/s"]);
}

/// Reads the u64 at `addr` of a built stack.
fn word(st: &InitialStack, addr: u64) -> u64 {
    let at = (addr - st.sp) as usize;
    u64::from_le_bytes(st.bytes[at..at + 8].try_into().unwrap())
}

/// Reads the NUL-terminated string at `addr` of a built stack.
fn string(st: &InitialStack, addr: u64) -> Vec<u8> {
    let at = (addr - st.sp) as usize;
    let len = st.bytes[at..].iter().position(|&c| c == 0).unwrap();
    st.bytes[at..at + len].to_vec()
}

/// The auxiliary vector of a built stack, `AT_NULL` excluded.
fn auxv_of(st: &InitialStack) -> Vec<(u64, u64)> {
    let argc = word(st, st.sp);
    let mut p = st.sp + 8 * (argc + 2);
    while word(st, p) != 0 {
        p += 8;
    }
    p += 8;
    let mut aux = Vec::new();
    while word(st, p) != AT_NULL {
        aux.push((word(st, p), word(st, p + 8)));
        p += 16;
    }
    aux
}

const TOP: u64 = 0x7fff_ffff_e000;

#[test]
fn initial_stack_layout() {
    let random: [u8; 16] = core::array::from_fn(|i| i as u8 + 1);
    let st = build_initial_stack(
        TOP,
        b"/bin/busybox",
        &[b"sh", b"-c", b"echo hi"],
        &[b"PATH=/bin", b"HOME=/"],
        &[(AT_PAGESZ, 4096), (AT_PHNUM, 10), (AT_RANDOM, 0)],
        random,
        b"x86_64",
    )
    .unwrap();
    assert_eq!(st.sp % 16, 0);
    assert_eq!(st.bytes.len() as u64, TOP - st.sp);
    assert_eq!(word(&st, st.sp), 3, "argc");
    let argv: Vec<_> = (0..3).map(|i| string(&st, word(&st, st.sp + 8 + 8 * i))).collect();
    assert_eq!(argv, [&b"sh"[..], b"-c", b"echo hi"]);
    assert_eq!(word(&st, st.sp + 32), 0);
    let envp: Vec<_> = (0..2).map(|i| string(&st, word(&st, st.sp + 40 + 8 * i))).collect();
    assert_eq!(envp, [&b"PATH=/bin"[..], b"HOME=/"]);
    assert_eq!(word(&st, st.sp + 56), 0);

    let aux = auxv_of(&st);
    assert_eq!(&aux[..2], [(AT_PAGESZ, 4096), (AT_PHNUM, 10)]);
    assert_eq!(aux.iter().filter(|(k, _)| *k == AT_RANDOM).count(), 1, "replaced in place");
    let get = |key| aux.iter().find(|(k, _)| *k == key).unwrap().1;
    let r = (get(AT_RANDOM) - st.sp) as usize;
    assert_eq!(st.bytes[r..r + 16], random);
    assert_eq!(string(&st, get(AT_PLATFORM)), b"x86_64");
    assert_eq!(string(&st, get(AT_EXECFN)), b"/bin/busybox");

    // Linux's order from the top: 8 zero bytes, execfn, env strings, arg strings.
    assert_eq!(st.bytes[st.bytes.len() - 8..], [0; 8]);
    assert_eq!(get(AT_EXECFN), TOP - 8 - 13);
    assert_eq!(st.env, TOP - 8 - 13 - 17..TOP - 8 - 13);
    assert_eq!(st.args, st.env.start - 14..st.env.start);
    assert_eq!(word(&st, st.sp + 8), st.args.start, "argv[0] is the lowest string");
    // Platform and random bytes sit below the 16-aligned strings, above the tables.
    assert!(get(AT_PLATFORM) < st.args.start && get(AT_RANDOM) + 16 == get(AT_PLATFORM));
    assert!(st.sp + 8 * (1 + 4 + 3 + 2 * 6) <= get(AT_RANDOM));
}

#[test]
fn initial_stack_edge_cases() {
    // No argv: one empty argument, as Linux since 5.18; no platform: no AT_PLATFORM.
    let st = build_initial_stack(TOP, b"/x", &[], &[], &[], [0; 16], b"").unwrap();
    assert_eq!(word(&st, st.sp), 1);
    assert_eq!(string(&st, word(&st, st.sp + 8)), b"");
    let aux = auxv_of(&st);
    assert!(aux.iter().all(|(k, _)| *k != AT_PLATFORM));
    assert_eq!(aux.len(), 2);
    // Alignment holds for every string length.
    for n in 0..40 {
        let arg = vec![b'a'; n];
        let st =
            build_initial_stack(TOP, b"/x", &[&arg], &[], &[(AT_PAGESZ, 4096)], [0; 16], b"x86_64").unwrap();
        assert_eq!(st.sp % 16, 0);
        assert_eq!(string(&st, word(&st, st.sp + 8)), arg);
    }
}

#[test]
fn initial_stack_limits() {
    let build =
        |args: &[&[u8]], aux: &[(u64, u64)]| build_initial_stack(TOP, b"/x", args, &[], aux, [0; 16], b"");
    let huge = vec![b'a'; MAX_ARG_STRLEN];
    assert_eq!(build(&[&huge], &[]), Err(Errno::E2BIG));
    assert!(build(&[&huge[1..]], &[]).is_ok());
    let many: Vec<&[u8]> = vec![&huge[..100_000]; ARG_MAX / 100_000 + 1];
    assert_eq!(build(&many, &[]), Err(Errno::E2BIG));
    assert_eq!(build(&[b"a"], &[(AT_NULL, 0)]), Err(Errno::EINVAL));
    assert_eq!(build_initial_stack(TOP + 8, b"/x", &[], &[], &[], [0; 16], b""), Err(Errno::EINVAL));
    assert_eq!(build_initial_stack(64, b"/x", &[b"a"], &[], &[], [0; 16], b"x86_64"), Err(Errno::EINVAL));
}

#[test]
fn the_first_page_is_enough_for_a_plan() {
    let Ok(image) = std::fs::read("/bin/busybox") else {
        panic!("/bin/busybox is missing: install Debian's busybox-static (make setup does)");
    };
    let full = parse_elf(&image).unwrap();
    let head = parse_elf_head(&image[..4096], image.len() as u64).unwrap();
    assert_eq!(full, head);
    assert!(parse_elf_head(&image[..32], image.len() as u64).is_err(), "a truncated header is refused");
    assert!(parse_elf_head(&image[..4096], 8192).is_err(), "segments past the stated size are refused");
}
