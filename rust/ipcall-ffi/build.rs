//! Gives `libipcall.so` the soname `libipcall.so.<ABI major>`.
//!
//! The ABI major number lives in the file `abi-major` (one integer), apart
//! from the crate version: it changes only when the C ABI breaks. `make
//! install` reads the same file to name the installed library and its links.
//!
//! It also puts the soname link `libipcall.so.<ABI major> -> libipcall.so`
//! next to the library cargo builds, so that a program linked against the
//! build tree (`-L target/release -lipcall`) finds the file its soname names
//! at run time. Cargo offers no hook after linking; the link is relative, so
//! it is valid as soon as cargo writes `libipcall.so` beside it.

fn main() {
    println!("cargo:rerun-if-changed=abi-major");
    println!("cargo:rerun-if-changed=build.rs");
    let abi_major = std::fs::read_to_string("abi-major").expect("rust/ipcall-ffi/abi-major is readable");
    let abi_major: u32 = abi_major.trim().parse().expect("rust/ipcall-ffi/abi-major holds one integer");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libipcall.so.{abi_major}");
        soname_link(abi_major);
    }
    println!("cargo:rustc-env=IPCALL_ABI_MAJOR={abi_major}");
}

/// Creates `<profile dir>/libipcall.so.<abi_major> -> libipcall.so`.
fn soname_link(abi_major: u32) {
    // OUT_DIR is <profile dir>/build/ipcall-ffi-<hash>/out, whatever the
    // target dir, profile or --target triple.
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(profile_dir) = out_dir.ancestors().nth(3) else { return };
    let link = profile_dir.join(format!("libipcall.so.{abi_major}"));
    if std::fs::read_link(&link).is_ok_and(|target| target.as_os_str() == "libipcall.so") {
        return;
    }
    let _ = std::fs::remove_file(&link);
    if let Err(error) = std::os::unix::fs::symlink("libipcall.so", &link) {
        println!("cargo:warning=could not create {}: {error}", link.display());
    }
}
