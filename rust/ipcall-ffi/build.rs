//! Gives `libipcall.so` the soname `libipcall.so.<ABI major>`.
//!
//! The ABI major number lives in the file `abi-major` (one integer), apart
//! from the crate version: it changes only when the C ABI breaks. `make
//! install` reads the same file to name the installed library and its links.

fn main() {
    println!("cargo:rerun-if-changed=abi-major");
    println!("cargo:rerun-if-changed=build.rs");
    let abi_major = std::fs::read_to_string("abi-major").expect("rust/ipcall-ffi/abi-major is readable");
    let abi_major: u32 = abi_major.trim().parse().expect("rust/ipcall-ffi/abi-major holds one integer");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libipcall.so.{abi_major}");
    }
    println!("cargo:rustc-env=IPCALL_ABI_MAJOR={abi_major}");
}
