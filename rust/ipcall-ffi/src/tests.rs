//! Unit tests of the boundary itself: status numbers, the version constants,
//! the panic boundary, argument checks. The behaviour through the C ABI is
//! tested from C and C++ (tests/c), against the installed library.

use std::ffi::CStr;

use super::*;

fn text(pointer: *const c_char) -> String {
    assert!(!pointer.is_null());
    // SAFETY: (1) ipcall returns static or thread-local NUL-terminated strings.
    unsafe { CStr::from_ptr(pointer) }.to_str().expect("UTF-8").to_owned()
}

#[test]
fn status_numbers_are_the_documented_ones() {
    let numbers: Vec<(ipcall_status, u32)> = ipcall_status::ALL.iter().map(|s| (*s, *s as u32)).collect();
    let expected = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 100, 101];
    assert_eq!(numbers.iter().map(|(_, n)| *n).collect::<Vec<_>>(), expected);
}

#[test]
fn every_core_error_kind_has_its_own_status() {
    let mut seen = std::collections::HashSet::new();
    for &kind in ErrorKind::all() {
        let status = ipcall_status::of_kind(kind);
        assert_ne!(status, IPCALL_OK);
        assert_eq!(status as u32, kind.number(), "{kind:?}");
        assert!(seen.insert(status), "{kind:?} shares a status");
        // The C name is the core's code with the IPCALL_E_ prefix.
        assert_eq!(format!("{status:?}"), format!("IPCALL_E_{}", kind.code()));
    }
}

#[test]
fn strerror_names_every_status_and_unknown_numbers() {
    for status in ipcall_status::ALL {
        let description = text(ipcall_strerror(status as u32));
        assert!(!description.is_empty() && description != "unknown status", "{status:?}");
    }
    assert_eq!(text(ipcall_strerror(13)), "unknown status");
    assert_eq!(text(ipcall_strerror(u32::MAX)), "unknown status");
}

#[test]
fn version_constants_match_cargo_toml() {
    let number = |s: &str| s.parse::<u32>().expect("a number");
    assert_eq!(IPCALL_VERSION_MAJOR, number(env!("CARGO_PKG_VERSION_MAJOR")));
    assert_eq!(IPCALL_VERSION_MINOR, number(env!("CARGO_PKG_VERSION_MINOR")));
    assert_eq!(IPCALL_VERSION_PATCH, number(env!("CARGO_PKG_VERSION_PATCH")));
    assert_eq!(text(ipcall_version()), env!("CARGO_PKG_VERSION"));
    // build.rs reads rust/ipcall-ffi/abi-major for the soname.
    assert_eq!(IPCALL_ABI_MAJOR, number(env!("IPCALL_ABI_MAJOR")));
}

#[test]
fn a_panic_becomes_ipcall_e_panic_with_its_message() {
    let status = guard(|| panic!("deliberate test panic"));
    assert_eq!(status, IPCALL_E_PANIC);
    let message = text(ipcall_last_error_message());
    assert!(message.contains("deliberate test panic"), "{message}");
    assert_eq!(guard_value(-1, || -> i32 { panic!("in an accessor") }), -1);
    assert!(text(ipcall_last_error_message()).contains("in an accessor"));
}

#[test]
fn last_error_is_per_thread_and_kept_across_successes() {
    let mut out = std::ptr::null_mut();
    assert_eq!(ipcall_server_bind(c"no-colon".as_ptr(), std::ptr::null(), &mut out), IPCALL_E_INVALID_NAME);
    assert!(out.is_null(), "out is written only on success");
    let message = text(ipcall_last_error_message());
    assert!(message.contains("no-colon"), "{message}");
    std::thread::spawn(|| assert_eq!(text(ipcall_last_error_message()), "")).join().unwrap();
    assert_eq!(text(ipcall_version()), env!("CARGO_PKG_VERSION"));
    assert_eq!(text(ipcall_last_error_message()), message);
}

#[test]
fn null_and_out_of_range_arguments_are_invalid() {
    let mut server = std::ptr::null_mut();
    assert_eq!(ipcall_server_bind(std::ptr::null(), std::ptr::null(), &mut server), IPCALL_E_INVALID);
    assert_eq!(ipcall_server_bind(c"mem:ffi-null".as_ptr(), std::ptr::null(), std::ptr::null_mut()), IPCALL_E_INVALID);
    assert_eq!(ipcall_server_bind(c"mem:ffi-null".as_ptr(), std::ptr::null(), &mut server), IPCALL_OK);
    let mut request = std::ptr::null_mut();
    assert_eq!(ipcall_server_recv(server, -2, &mut request), IPCALL_E_INVALID);
    assert!(text(ipcall_last_error_message()).contains("-2"));
    let mut client = std::ptr::null_mut();
    assert_eq!(ipcall_client_connect(c"mem:ffi-null".as_ptr(), 0, &mut client), IPCALL_OK);
    let mut reply = ipcall_buf { data: std::ptr::null_mut(), len: 0 };
    assert_eq!(ipcall_client_call(client, std::ptr::null(), 3, -1, &mut reply), IPCALL_E_INVALID);
    ipcall_client_free(client);
    ipcall_server_free(server);
}

#[test]
fn empty_and_non_empty_buffers_round_trip_through_free() {
    let mut empty = ipcall_buf::from_vec(Vec::new());
    assert!(empty.data.is_null() && empty.len == 0);
    ipcall_buf_free(&mut empty);
    let mut full = ipcall_buf::from_vec(vec![7u8; 1000]);
    assert_eq!(full.len, 1000);
    ipcall_buf_free(&mut full);
    assert!(full.data.is_null() && full.len == 0);
    ipcall_buf_free(&mut full);
    ipcall_buf_free(std::ptr::null_mut());
}

#[test]
fn wait_mode_numbers_are_the_documented_ones_and_reach_the_core_options() {
    use ipcall_core::WaitMode;
    assert_eq!(
        [
            ipcall_wait_mode::IPCALL_WAIT_ADAPTIVE,
            ipcall_wait_mode::IPCALL_WAIT_SPIN,
            ipcall_wait_mode::IPCALL_WAIT_BLOCK
        ]
        .map(|m| m as u32),
        [0, 1, 2]
    );
    let (mut server, mut client) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(ipcall_server_options_new(&mut server), IPCALL_OK);
    assert_eq!(ipcall_client_options_new(&mut client), IPCALL_OK);
    for (number, mode) in [(1, WaitMode::Spin), (2, WaitMode::Block), (0, WaitMode::Adaptive)] {
        assert_eq!(ipcall_server_options_set_wait_mode(server, number), IPCALL_OK);
        assert_eq!(ipcall_client_options_set_wait_mode(client, number), IPCALL_OK);
        // SAFETY: (1) both are live handles from the `_new` calls above.
        let (s, c) = unsafe { (&(*server).inner, &(*client).inner) };
        assert_eq!((s.get_wait_mode(), c.get_wait_mode()), (mode, mode));
        assert!(format!("{s:?}").contains(&format!("wait_mode: {mode:?}")), "{s:?}");
    }
    assert_eq!(ipcall_server_options_set_wait_mode(server, 1), IPCALL_OK);
    for bad in [3, 100, u32::MAX] {
        assert_eq!(ipcall_server_options_set_wait_mode(server, bad), IPCALL_E_INVALID);
        assert!(text(ipcall_last_error_message()).contains(&format!("wait mode {bad}")));
        assert_eq!(ipcall_client_options_set_wait_mode(client, bad), IPCALL_E_INVALID);
    }
    // SAFETY: (1) as above.
    assert_eq!(unsafe { &(*server).inner }.get_wait_mode(), WaitMode::Spin, "a refused value changes nothing");
    assert_eq!(ipcall_server_options_set_wait_mode(std::ptr::null_mut(), 0), IPCALL_E_INVALID);
    assert_eq!(ipcall_client_options_set_wait_mode(std::ptr::null_mut(), 0), IPCALL_E_INVALID);
    ipcall_server_options_free(server);
    ipcall_client_options_free(client);
}

#[test]
fn connection_names_are_checked_and_copied_into_the_core_options() {
    let (mut server, mut client) = (std::ptr::null_mut(), std::ptr::null_mut());
    assert_eq!(ipcall_server_options_new(&mut server), IPCALL_OK);
    assert_eq!(ipcall_client_options_new(&mut client), IPCALL_OK);
    let name = std::ffi::CString::new("billing worker ✓").unwrap();
    assert_eq!(ipcall_server_options_set_connection_name(server, name.as_ptr()), IPCALL_OK);
    assert_eq!(ipcall_client_options_set_connection_name(client, name.as_ptr()), IPCALL_OK);
    drop(name);
    // SAFETY: (1) both are live handles from the `_new` calls above.
    let (s, c) = unsafe { (&(*server).inner, &(*client).inner) };
    assert_eq!(
        (s.get_connection_name(), c.get_connection_name()),
        (Some("billing worker ✓"), Some("billing worker ✓"))
    );
    let long = std::ffi::CString::new("n".repeat(257)).unwrap();
    for bad in [c"".as_ptr(), c"tab\there".as_ptr(), c"\xff\xfe".as_ptr(), long.as_ptr(), std::ptr::null()] {
        assert_eq!(ipcall_server_options_set_connection_name(server, bad), IPCALL_E_INVALID);
        assert_eq!(ipcall_client_options_set_connection_name(client, bad), IPCALL_E_INVALID);
    }
    assert!(text(ipcall_last_error_message()).contains("name is NULL"));
    // SAFETY: (1) as above.
    assert_eq!(unsafe { &(*client).inner }.get_connection_name(), Some("billing worker ✓"));
    assert_eq!(ipcall_client_options_set_connection_name(std::ptr::null_mut(), c"x".as_ptr()), IPCALL_E_INVALID);
    ipcall_server_options_free(server);
    ipcall_client_options_free(client);
}
