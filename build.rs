//! Links the daemon's binaries with packed relative relocations (`-z pack-relative-relocs`,
//! DT_RELR) on Linux with glibc 2.36 or later: the table the loader reads once at every
//! start shrinks from about 2 MiB (`.rela.dyn`, 24 bytes per pointer) to a few
//! kilobytes, and its pages no longer stay resident beside the code
//! (bench/README.md, footprint). A binary linked so needs glibc 2.36 where it runs
//! (Debian 12, the images' base); it is only linked so for the machine it is built on,
//! and only when that machine's glibc is that new, so a build on an older system runs
//! there as before and a cross build is left as it was. `VIGIL_RELR=0` turns it off.
//!
//! A release build for x86_64 Linux (where rustc links with its own lld) also hands the
//! linker `link/hot-functions.txt` as its symbol ordering file: the functions a running
//! daemon executes, written by `bench/hot-functions.sh` from a callgrind profile. They
//! are laid out side by side at the start of the code, so the pages the daemon touches
//! (and the 64 KiB the kernel maps around each fault) hold its code and little else:
//! the resident code falls by several MiB (bench/README.md, footprint). A name the
//! build does not hold is ignored; `VIGIL_SYMBOL_ORDER=0` turns it off, and a build whose
//! RUSTFLAGS pick another linker does without it.

use std::process::Command;

/// The symbol ordering file, relative to the crate: one mangled name a line.
const HOT_FUNCTIONS: &str = "link/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VIGIL_RELR");
    println!("cargo:rerun-if-env-changed=VIGIL_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-changed={HOT_FUNCTIONS}");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    // The options are lld's (rustc's own linker on this target); a build told to link
    // with another linker gets none of them.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = flags.contains("-fuse-ld=") && !flags.contains("-fuse-ld=lld")
        || flags.contains("linker-features=-lld")
        || flags.contains("linker-flavor=");
    if var("VIGIL_SYMBOL_ORDER") != "0"
        && !other_linker
        && var("PROFILE") == "release"
        && var("HOST") == var("TARGET")
        && var("TARGET") == "x86_64-unknown-linux-gnu"
    {
        let path = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join(HOT_FUNCTIONS);
        if path.is_file() {
            println!(
                "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
                path.display()
            );
            // Names of functions this build inlined or no longer has: expected, not news.
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
    if var("VIGIL_RELR") == "0"
        || var("HOST") != var("TARGET")
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
    {
        return;
    }
    if glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is at
/// least `major.minor`; false when it cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .trim_start_matches("glibc ")
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
