//! Writes the man page `ipcall.1` into OUT_DIR from the command definition
//! that main.rs parses with (src/cli.rs), so the page cannot drift from the
//! options; the binary embeds it and prints it with `ipcall man`.

include!("src/cli.rs");

fn main() {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command()).render(&mut page).expect("rendering the man page into memory");
    std::fs::write(out_dir.join("ipcall.1"), page).expect("writing ipcall.1 into OUT_DIR");
}
