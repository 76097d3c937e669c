//! Reading and setting a folder's security descriptor through the Win32 security API (never by
//! running icacls and parsing what it prints). The descriptors themselves are decided as data
//! in `access`; `SetNamedSecurityInfoW` also carries a folder's inheritable ACEs to what it
//! already holds (an upgrade's state and logs).
//!
//! Under Wine the calls succeed and the descriptor is reduced to Unix mode bits (Wine keeps no
//! ACLs): the calls are exercised there, their effect only by the model in `access`.

use std::path::Path;
use windows_sys::Win32::Foundation::{ERROR_SUCCESS, GetLastError, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorControl, GetSecurityDescriptorDacl,
    GetSecurityDescriptorOwner, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, SE_DACL_PROTECTED, UNPROTECTED_DACL_SECURITY_INFORMATION,
};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn win_error(what: &str, code: u32) -> String {
    format!(
        "{what}: {} (Windows error {code})",
        std::io::Error::from_raw_os_error(code as i32)
    )
}

/// A descriptor from `ConvertStringSecurityDescriptorToSecurityDescriptorW`, freed on drop.
struct Owned(PSECURITY_DESCRIPTOR);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the system with LocalAlloc, freed once.
            unsafe {
                LocalFree(self.0);
            }
        }
    }
}

/// Sets `path`'s owner and DACL to those of `sddl` (protected or not, as `sddl` says).
pub fn set(path: &Path, sddl: &str) -> Result<(), String> {
    let text = wide(sddl);
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `text` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        // SAFETY: no argument.
        return Err(win_error(
            &format!("the descriptor `{sddl}` is not valid"),
            unsafe { GetLastError() },
        ));
    }
    let sd = Owned(sd);
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut present = 0;
    let mut defaulted = 0;
    let mut control = 0u16;
    let mut revision = 0u32;
    // SAFETY: `sd.0` is a valid descriptor; the out pointers point into it.
    unsafe {
        GetSecurityDescriptorOwner(sd.0, &mut owner, &mut defaulted);
        GetSecurityDescriptorDacl(sd.0, &mut present, &mut dacl, &mut defaulted);
        GetSecurityDescriptorControl(sd.0, &mut control, &mut revision);
    }
    let mut info = DACL_SECURITY_INFORMATION;
    if !owner.is_null() {
        info |= OWNER_SECURITY_INFORMATION;
    }
    info |= if control & SE_DACL_PROTECTED != 0 {
        PROTECTED_DACL_SECURITY_INFORMATION
    } else {
        UNPROTECTED_DACL_SECURITY_INFORMATION
    };
    let name = wide(&path.to_string_lossy());
    // SAFETY: `name` is NUL-terminated; owner and DACL point into `sd`, alive for the call.
    let rc = unsafe {
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            info,
            owner,
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(win_error(
            &format!("setting who may use {}", path.display()),
            rc,
        ));
    }
    Ok(())
}

/// `path`'s owner and DACL as SDDL.
pub fn get(path: &Path) -> Result<String, String> {
    let name = wide(&path.to_string_lossy());
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let info = OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    // SAFETY: `name` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            info,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(win_error(
            &format!("reading who may use {}", path.display()),
            rc,
        ));
    }
    let sd = Owned(sd);
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: `sd.0` is valid; `text` receives a LocalAlloc'd NUL-terminated string.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd.0,
            SDDL_REVISION_1,
            info,
            &mut text,
            &mut len,
        )
    };
    if ok == 0 {
        // SAFETY: no argument.
        return Err(win_error("converting a descriptor to text", unsafe {
            GetLastError()
        }));
    }
    let text = Owned(text.cast());
    // SAFETY: the system wrote `len` UTF-16 units (with the NUL) at `text`.
    let units = unsafe { std::slice::from_raw_parts(text.0 as *const u16, len as usize) };
    Ok(String::from_utf16_lossy(units)
        .trim_end_matches('\0')
        .to_string())
}
