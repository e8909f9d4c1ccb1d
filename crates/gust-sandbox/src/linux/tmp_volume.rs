//! Each environment's /tmp: an ext4 filesystem of its own, of exactly its `EphemeralStorage`,
//! on a sparse image file on the host's disk through a loop device.
//!
//! On Lambda /tmp is storage, not memory. A tmpfs would charge every byte written to /tmp to
//! the function's memory cgroup, where it cannot be reclaimed: a 256 MB function writing
//! 300 MB would be killed. A disk-backed filesystem's pages are page cache, which the kernel
//! writes back and reclaims under the cgroup's limit instead. A filesystem per environment
//! (rather than directories with quotas on a shared one) gives exactly what a function sees on
//! Lambda: `ENOSPC` on the write that passes the size, `statfs` showing that size, and
//! nothing shared with another environment.
//!
//! mkfs runs once per size; each volume is a copy of the blocks it wrote into a new sparse
//! file. Making one still costs a few milliseconds (loop device, mount), so a thread keeps a few of the
//! default size ready, each already mounted in the mount namespace its environment will use.
//! The image file is unlinked as soon as its loop device holds it, and the loop device clears
//! itself when its filesystem is unmounted (when the last process of the environment's mount
//! namespace is gone): nothing is left on the host's disk after an environment, even if Gust
//! is killed.
//!
//! The images are sparse: a volume takes from the host's disk only what its environment
//! writes. What live volumes count for is bounded by a budget (by default several times the
//! free space, as thin provisioning goes: most environments write little), and no volume is
//! made while the disk's free space is below a reserve kept for the host; either way the
//! invoke path retires idle environments to make room, else the cold start fails clearly.
//!
//! What a volume counts for ([`TmpPolicy`]): a new one needs its full size to fit under the
//! budget, and counts it while its environment runs. Under the measured policy an idle one
//! counts the disk blocks its image really holds ([`TmpCount::Used`]: `st_blocks` of the
//! unlinked image, through the handle each volume keeps on it), and so does a volume made
//! ahead (an empty filesystem, about 1 MB). Counting a volume in full again never fails: a
//! running environment's writes are refused only by its own filesystem's size, and the
//! budget may be exceeded until idle ones retire.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::TmpCount;
use linux_raw_sys::loop_device::{
    LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LOOP_CONFIGURE, LOOP_CTL_GET_FREE, loop_config,
};

/// The size every environment gets unless its function asks for another (Lambda's default).
const DEFAULT_MB: u32 = 512;

/// What an idle environment's /tmp counts for against the budget (the memory policy's
/// counterpart, and set with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TmpPolicy {
    /// The disk blocks its image holds ([`TmpCount::Used`] is honoured); volumes made ahead
    /// count theirs too.
    #[default]
    Measured,
    /// Its full size, always ([`TmpCount::Used`] counts the full size); volumes made ahead
    /// count nothing. The budget is then never exceeded.
    Reserved,
}

/// Why a /tmp volume could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "no room for a {wanted} MB /tmp: live environments' /tmp already counts for {committed} MB of the {budget} MB the host allows (gust serve --tmp-budget)"
    )]
    NoRoom {
        wanted: u32,
        committed: u64,
        budget: u64,
    },
    #[error(
        "no room for a new /tmp: the host's disk has {free} MB free, below the {reserve} MB kept for the host"
    )]
    DiskShort { free: u64, reserve: u64 },
    #[error("cannot make a /tmp volume ({step}): {source}")]
    Make {
        step: &'static str,
        source: io::Error,
    },
}

impl VolumeError {
    /// Whether the host's room for /tmp is taken (rather than a volume failing to be made).
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self,
            VolumeError::NoRoom { .. } | VolumeError::DiskShort { .. }
        )
    }
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> VolumeError {
    move |source| VolumeError::Make { step, source }
}

/// The /tmp budget and what live volumes count for against it (MB).
struct Budget {
    committed: Arc<AtomicU64>,
    limit_mb: u64,
}

impl Budget {
    fn new(limit_mb: u64) -> Self {
        Self {
            committed: Arc::new(AtomicU64::new(0)),
            limit_mb,
        }
    }

    fn committed_mb(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// A share of `mb`, counted whether or not it fits (what a volume made ahead takes).
    fn share(&self, mb: u64) -> Share {
        let mut share = Share {
            mb: 0,
            committed: self.committed.clone(),
        };
        share.resize(mb);
        share
    }

    /// A share of `size_mb` if it fits under the budget.
    fn try_share(&self, size_mb: u32) -> Result<Share, VolumeError> {
        let mut share = self.share(0);
        self.try_grow(&mut share, size_mb)?;
        Ok(share)
    }

    /// Grows `share` to `size_mb` if the total then fits under the budget; else leaves it.
    fn try_grow(&self, share: &mut Share, size_mb: u32) -> Result<(), VolumeError> {
        let wanted = u64::from(size_mb);
        if wanted <= share.mb {
            share.resize(wanted);
            return Ok(());
        }
        let more = wanted - share.mb;
        let mut committed = self.committed_mb();
        loop {
            if committed.saturating_sub(share.mb) + wanted > self.limit_mb {
                return Err(VolumeError::NoRoom {
                    wanted: size_mb,
                    committed,
                    budget: self.limit_mb,
                });
            }
            match self.committed.compare_exchange(
                committed,
                committed + more,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    share.mb = wanted;
                    return Ok(());
                }
                Err(now) => committed = now,
            }
        }
    }
}

/// What one volume counts for against the /tmp budget, returned when dropped.
struct Share {
    mb: u64,
    committed: Arc<AtomicU64>,
}

impl Share {
    /// Counts `mb` instead, whether or not it fits.
    fn resize(&mut self, mb: u64) {
        if mb >= self.mb {
            self.committed.fetch_add(mb - self.mb, Ordering::AcqRel);
        } else {
            self.committed.fetch_sub(self.mb - mb, Ordering::AcqRel);
        }
        self.mb = mb;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.committed.fetch_sub(self.mb, Ordering::AcqRel);
    }
}

/// What `blocks` 512-byte blocks on the disk count for (MB): rounded up to a whole MB, at
/// least 1, at most the volume's size.
fn used_mb(blocks: u64, size_mb: u32) -> u64 {
    (blocks * 512)
        .div_ceil(1 << 20)
        .clamp(1, u64::from(size_mb).max(1))
}

/// One environment's /tmp: a mount namespace in which its filesystem is mounted at the
/// launcher's /tmp mount point. The filesystem (and with it the loop device and the disk
/// space) goes when the namespace does.
pub struct TmpVolume {
    pub mount_namespace: OwnedFd,
    pub size_mb: u32,
    /// The image file, unlinked: its allocated blocks are what the volume takes from the disk.
    image: File,
    policy: TmpPolicy,
    /// What it counts for against the budget.
    share: Share,
}

impl TmpVolume {
    /// Sets what the volume counts for against the budget; returns it (MB). Never fails:
    /// counting in full again may take the total past the budget.
    pub fn count(&mut self, count: TmpCount) -> u64 {
        let mb = match (count, self.policy) {
            (TmpCount::Nothing, _) => 0,
            (TmpCount::Used, TmpPolicy::Measured) => self.used_mb(),
            (TmpCount::Full, _) | (TmpCount::Used, TmpPolicy::Reserved) => u64::from(self.size_mb),
        };
        self.share.resize(mb);
        mb
    }

    /// The disk the image holds now (MB, see [`used_mb`]); its full size if that cannot be
    /// read.
    fn used_mb(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        match self.image.metadata() {
            Ok(meta) => used_mb(meta.blocks(), self.size_mb),
            Err(e) => {
                tracing::debug!(error = %e, "could not read a /tmp image's size on disk");
                u64::from(self.size_mb)
            }
        }
    }
}

struct Shared {
    ready: Mutex<Vec<TmpVolume>>,
    wake: Condvar,
    budget: Budget,
    policy: TmpPolicy,
    /// Space (MB) left free on the images' filesystem: no new volume is made below it.
    reserve_mb: u64,
    images: PathBuf,
    mount_point: PathBuf,
    mkfs: PathBuf,
    wanted: usize,
    /// Set when the launcher goes: the refill thread stops instead of making more.
    closing: std::sync::atomic::AtomicBool,
    /// A formatted, empty filesystem per size, made once.
    templates: Mutex<HashMap<u32, Arc<Template>>>,
}

/// An empty filesystem of one size as the blocks mkfs wrote (a few hundred KB; the rest of
/// the image reads as zeros): writing them into a new sparse file makes another in well under
/// a millisecond, where running mkfs costs several.
struct Template {
    extents: Vec<(u64, Vec<u8>)>,
}

impl Template {
    /// Formats an image of `size_mb` in `dir` and keeps what mkfs wrote.
    fn make(mkfs: &Path, dir: &Path, size_mb: u32) -> Result<Self, VolumeError> {
        let path = dir.join(uuid_like()).with_extension("template");
        let made = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(step("creating the template image"))?;
            file.set_len(image_bytes(size_mb))
                .map_err(step("sizing the template image"))?;
            format(mkfs, &path)?;
            data_extents(&file).map_err(step("reading the template image"))
        })();
        let _ = fs::remove_file(&path);
        Ok(Self { extents: made? })
    }

    /// Writes the filesystem into `file`, a new file of the image's size.
    fn write_to(&self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        for (offset, data) in &self.extents {
            file.write_all_at(data, *offset)?;
        }
        Ok(())
    }
}

/// The regions of `file` that hold data (not holes), with their contents.
fn data_extents(file: &File) -> io::Result<Vec<(u64, Vec<u8>)>> {
    use std::os::unix::fs::FileExt;
    let length = file.metadata()?.len();
    let seek = |offset: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        // SAFETY: lseek(2) on a descriptor we own; it only moves the file offset.
        let at = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
        if at >= 0 {
            return Ok(Some(at as u64));
        }
        let error = io::Error::last_os_error();
        // ENXIO: no data at or after `offset`.
        match error.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(error),
        }
    };
    let mut extents = Vec::new();
    let mut offset = 0;
    while offset < length {
        let Some(start) = seek(offset, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(length).min(length);
        let mut data = vec![0; (end - start) as usize];
        file.read_exact_at(&mut data, start)?;
        extents.push((start, data));
        offset = end;
    }
    Ok(extents)
}

/// Makes /tmp volumes, keeps a few of the default size ready, and holds the budget.
pub struct TmpVolumes {
    shared: Arc<Shared>,
}

/// Where e2fsprogs' mkfs.ext4 is (sbin directories are often not on a service's PATH).
fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| candidate.is_file())
}

impl TmpVolumes {
    /// Prepares `images` (a directory on the disk that will hold the image files) and starts
    /// the thread that keeps `ready` volumes of the default size. Volumes mount at
    /// `mount_point` in their own mount namespaces, and count for what `policy` says against
    /// `budget_mb`. Fails with a clear reason when the host cannot make them (no loop
    /// devices, no mkfs.ext4).
    pub fn start(
        images: PathBuf,
        mount_point: PathBuf,
        budget_mb: u64,
        policy: TmpPolicy,
        ready: usize,
    ) -> io::Result<Self> {
        let mkfs = find_mkfs().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "environments' /tmp needs mkfs.ext4 (Debian: apt install e2fsprogs)",
            )
        })?;
        if images.exists() {
            fs::remove_dir_all(&images)?;
        }
        fs::create_dir_all(&images)?;
        let (size_mb, _) = disk_space_mb(&images)?;
        let shared = Arc::new(Shared {
            reserve_mb: (size_mb / 20).clamp(256, 4096),
            ready: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            budget: Budget::new(budget_mb),
            policy,
            images,
            mount_point,
            mkfs,
            wanted: ready,
            closing: std::sync::atomic::AtomicBool::new(false),
            templates: Mutex::new(HashMap::new()),
        });
        // One volume made now proves that the host can make them.
        let first = shared.make(DEFAULT_MB, None).map_err(io::Error::other)?;
        shared.lock().push(first);
        let worker = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("gust-tmp-volumes".into())
            .spawn(move || refill(worker))?;
        Ok(Self { shared })
    }

    /// A volume of `size_mb` in its own mount namespace, counted in full: a ready one if it
    /// has the default size, else one made now. Its full size must fit under the budget.
    pub fn take(&self, size_mb: u32) -> Result<TmpVolume, VolumeError> {
        self.shared.check_disk()?;
        let ready = (size_mb == DEFAULT_MB)
            .then(|| self.shared.lock().pop())
            .flatten();
        self.shared.wake.notify_one();
        match ready {
            Some(mut volume) => match self.shared.budget.try_grow(&mut volume.share, size_mb) {
                Ok(()) => Ok(volume),
                Err(e) => {
                    self.shared.lock().push(volume);
                    Err(e)
                }
            },
            None => {
                let share = self.shared.budget.try_share(size_mb)?;
                self.shared.make(size_mb, Some(share))
            }
        }
    }

    /// MB of /tmp live volumes count for, and the budget.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.shared.budget.committed_mb(),
            self.shared.budget.limit_mb,
        )
    }
}

impl Drop for TmpVolumes {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.lock().clear();
        self.shared.wake.notify_all();
    }
}

/// Keeps the pool of ready volumes topped up while the launcher lives.
fn refill(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let missing = {
            let ready = strong.lock();
            let ready = strong
                .wake
                .wait_timeout_while(ready, std::time::Duration::from_secs(5), |r| {
                    r.len() >= strong.wanted
                })
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
            if strong.closing.load(Ordering::Acquire) {
                return;
            }
            strong.wanted.saturating_sub(ready.len())
        };
        for _ in 0..missing {
            if strong.closing.load(Ordering::Acquire) {
                return;
            }
            match strong.make(DEFAULT_MB, None) {
                Ok(volume) => strong.lock().push(volume),
                Err(e) => {
                    tracing::warn!(error = %e, "could not prepare a /tmp volume");
                    break;
                }
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TmpVolume>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The empty filesystem of `size_mb`, formatted the first time it is asked for.
    fn template(&self, size_mb: u32) -> Result<Arc<Template>, VolumeError> {
        let mut templates = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(template) = templates.get(&size_mb) {
            return Ok(template.clone());
        }
        let template = Arc::new(Template::make(&self.mkfs, &self.images, size_mb)?);
        templates.insert(size_mb, template.clone());
        Ok(template)
    }

    /// Refuses a new volume while the disk's free space is below the reserve.
    fn check_disk(&self) -> Result<(), VolumeError> {
        let (_, free) =
            disk_space_mb(&self.images).map_err(step("reading the disk's free space"))?;
        if free < self.reserve_mb {
            return Err(VolumeError::DiskShort {
                free,
                reserve: self.reserve_mb,
            });
        }
        Ok(())
    }

    /// Writes an empty filesystem of `size_mb` into a new image, attaches it to a loop
    /// device, unlinks it, and mounts it in a new mount namespace. It counts for `share`
    /// (taken for an environment), else (made ahead) for what it holds of the disk under the
    /// measured policy, nothing under the reserved one.
    fn make(&self, size_mb: u32, share: Option<Share>) -> Result<TmpVolume, VolumeError> {
        let template = self.template(size_mb)?;
        let image = self.images.join(uuid_like()).with_extension("ext4");
        let made = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&image)
                .map_err(step("creating the image file"))?;
            file.set_len(image_bytes(size_mb))
                .map_err(step("sizing the image file"))?;
            template
                .write_to(&file)
                .map_err(step("writing the filesystem"))?;
            let (device, path) = attach(&file)?;
            // The loop device holds the file now; its blocks are freed when it lets go (the
            // handle kept here only reads its size on disk).
            fs::remove_file(&image).map_err(step("unlinking the image file"))?;
            let mount_namespace = mount_in_new_namespace(&path, &self.mount_point)
                .map_err(step("mounting the filesystem"))?;
            // The mount holds the device from here: closing it lets it clear itself later.
            drop(device);
            Ok((mount_namespace, file))
        })();
        if made.is_err() {
            let _ = fs::remove_file(&image);
        }
        let (mount_namespace, image) = made?;
        let mut volume = TmpVolume {
            mount_namespace,
            size_mb,
            image,
            policy: self.policy,
            share: share.unwrap_or_else(|| self.budget.share(0)),
        };
        if volume.share.mb == 0 && self.policy == TmpPolicy::Measured {
            volume.count(TmpCount::Used);
        }
        Ok(volume)
    }
}

/// The image's size for a filesystem that offers `size_mb` to files: ext4's own metadata
/// (inode tables, bitmaps) takes about 2% of it, and the file itself some blocks of extents.
fn image_bytes(size_mb: u32) -> u64 {
    let size = u64::from(size_mb) << 20;
    size + size / 32 + (4 << 20)
}

/// The size and the space available (MB) of the filesystem holding `dir`.
pub fn disk_space_mb(dir: &Path) -> io::Result<(u64, u64)> {
    let path = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(2) with a NUL-terminated path fills the struct we own.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        (stat.f_blocks * stat.f_frsize) >> 20,
        (stat.f_bavail * stat.f_frsize) >> 20,
    ))
}

/// A unique file name.
fn uuid_like() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An ext4 filesystem without a journal (/tmp holds nothing worth recovering), no reserved
/// blocks, and inode tables left to be written as they are used (the file is sparse: unwritten
/// blocks read as zeros).
fn format(mkfs: &Path, image: &Path) -> Result<(), VolumeError> {
    let output = Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-m",
            "0",
            "-O",
            "^has_journal,^resize_inode",
            "-E",
            "lazy_itable_init=1,nodiscard,root_owner=0:0",
        ])
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(step("running mkfs.ext4"))?;
    if !output.status.success() {
        return Err(VolumeError::Make {
            step: "running mkfs.ext4",
            source: io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        });
    }
    Ok(())
}

/// Attaches `file` to a free loop device; returns the device, opened (the device stays
/// attached while it is open, and after that while it is mounted), and its path.
fn attach(file: &File) -> Result<(File, PathBuf), VolumeError> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(step("opening /dev/loop-control"))?;
    // Another process may take the free device first: then ask again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE.into()) };
        if number < 0 {
            return Err(step("finding a free loop device")(
                io::Error::last_os_error(),
            ));
        }
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(step("opening the loop device"))?;
        // SAFETY: both structs are plain old data; all-zero is a valid value.
        let mut config: loop_config = unsafe { std::mem::zeroed() };
        config.fd = file.as_raw_fd() as u32;
        config.block_size = 4096;
        // The loop device detaches itself when its last user (the mount) goes; reads and
        // writes bypass the image file's own page cache (the environment's filesystem already
        // caches them, charged to the environment).
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR as u32 | LO_FLAGS_DIRECT_IO as u32;
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config` we own for the call's duration.
        let configured = unsafe {
            libc::ioctl(
                device.as_raw_fd(),
                LOOP_CONFIGURE.into(),
                &config as *const _,
            )
        };
        if configured == 0 {
            return Ok((device, path));
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EBUSY) {
            return Err(step("configuring the loop device")(error));
        }
    }
    Err(step("configuring the loop device")(io::Error::other(
        "every free loop device was taken first",
    )))
}

/// Makes a mount namespace in which `device`'s filesystem is mounted at `mount_point`, world
/// writable with the sticky bit and empty (as /tmp is), and returns it. A short-lived thread
/// does it, since unsharing changes the calling thread's namespace.
fn mount_in_new_namespace(device: &Path, mount_point: &Path) -> io::Result<OwnedFd> {
    let source = CString::new(device.as_os_str().as_bytes())?;
    let target = CString::new(mount_point.as_os_str().as_bytes())?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(2) gives only this thread a new mount namespace and its own
                // filesystem context.
                if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Nothing mounted here may propagate back to the host.
                // SAFETY: mount(2) in this thread's new namespace, with a NUL-terminated static
                // path and nulls where the call takes none.
                let private = unsafe {
                    libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    )
                };
                if private != 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: mount(2) in this thread's new namespace, with NUL-terminated strings
                // that outlive the call.
                let mounted = unsafe {
                    libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        c"ext4".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME,
                        // Blocks of deleted files go back to the host's disk at once.
                        c"noinit_itable,discard".as_ptr().cast(),
                    )
                };
                if mounted != 0 {
                    return Err(io::Error::last_os_error());
                }
                // mkfs leaves lost+found; Lambda's /tmp starts empty.
                let _ = fs::remove_dir(mount_point.join("lost+found"));
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(mount_point, fs::Permissions::from_mode(0o1777))?;
                Ok(OwnedFd::from(File::open("/proc/thread-self/ns/mnt")?))
            })
            .join()
            .map_err(|_| io::Error::other("the mount namespace thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_room(result: Result<impl Sized, VolumeError>) -> bool {
        matches!(result, Err(VolumeError::NoRoom { .. }))
    }

    /// A volume of `size_mb` on a sparse image of which `written_mb` is written, counted as
    /// `policy` says against `budget` (no loop device or mount: only the accounting).
    fn volume(budget: &Budget, policy: TmpPolicy, size_mb: u32, written_mb: usize) -> TmpVolume {
        use std::io::Write;
        let mut image = tempfile::tempfile().unwrap();
        image.set_len(image_bytes(size_mb)).unwrap();
        image.write_all(&vec![7; written_mb << 20]).unwrap();
        image.sync_all().unwrap();
        TmpVolume {
            mount_namespace: OwnedFd::from(File::open("/dev/null").unwrap()),
            size_mb,
            image,
            policy,
            share: budget.try_share(size_mb).unwrap(),
        }
    }

    #[test]
    fn a_new_volume_needs_its_full_size_to_fit() {
        let budget = Budget::new(1024);
        let a = budget.try_share(512).unwrap();
        let _b = budget.try_share(512).unwrap();
        assert!(no_room(budget.try_share(512)));
        assert_eq!(budget.committed_mb(), 1024, "the refusal took nothing");
        drop(a);
        assert!(budget.try_share(512).is_ok());
    }

    #[test]
    fn idle_volumes_counted_at_what_they_hold_leave_room_for_more() {
        let budget = Budget::new(1100);
        let mut idle: Vec<Share> = (0..2).map(|_| budget.try_share(512).unwrap()).collect();
        assert!(no_room(budget.try_share(512)), "two fit in full, not three");
        idle.iter_mut().for_each(|share| share.resize(1));
        let third = budget.try_share(512).unwrap();
        assert_eq!(budget.committed_mb(), 514);
        let _fourth = budget.try_share(512).expect("1 + 1 + 512 + 512 ≤ 1100");
        assert!(no_room(budget.try_share(512)));
        drop(third);
        assert_eq!(budget.committed_mb(), 514);
        drop(idle);
        assert_eq!(budget.committed_mb(), 512);
    }

    #[test]
    fn a_running_volume_counts_in_full_again_even_past_the_budget() {
        let budget = Budget::new(1024);
        let mut shares: Vec<Share> = (0..2).map(|_| budget.try_share(512).unwrap()).collect();
        shares.iter_mut().for_each(|share| share.resize(1));
        let _third = budget.try_share(512).unwrap();
        // Both idle ones wake at once.
        shares.iter_mut().for_each(|share| share.resize(512));
        assert_eq!(budget.committed_mb(), 1536, "overcommitted, never refused");
        drop(shares);
        assert_eq!(budget.committed_mb(), 512);
    }

    #[test]
    fn a_volume_made_ahead_grows_to_its_full_size_only_if_it_fits() {
        let budget = Budget::new(600);
        let _ahead: Vec<Share> = (0..7).map(|_| budget.share(1)).collect();
        let mut taken = budget.share(1);
        budget.try_grow(&mut taken, 512).unwrap();
        assert_eq!((taken.mb, budget.committed_mb()), (512, 519));
        let mut next = budget.share(1);
        assert!(no_room(budget.try_grow(&mut next, 512)), "519 + 512 > 600");
        assert_eq!((next.mb, budget.committed_mb()), (1, 520), "left as it was");
        budget.try_grow(&mut taken, 100).unwrap();
        assert_eq!(budget.committed_mb(), 108, "shrinking always fits");
    }

    #[test]
    fn disk_blocks_count_in_whole_mb_within_the_size() {
        assert_eq!(used_mb(0, 512), 1, "an empty volume counts for something");
        assert_eq!(used_mb(1, 512), 1);
        assert_eq!(used_mb(2048, 512), 1, "exactly 1 MiB");
        assert_eq!(used_mb(2049, 512), 2, "rounded up");
        assert_eq!(
            used_mb(u64::from(u32::MAX), 512),
            512,
            "never more than its size"
        );
    }

    #[test]
    fn an_idle_volume_counts_what_its_image_holds_under_the_measured_policy() {
        let budget = Budget::new(4096);
        let mut volume = volume(&budget, TmpPolicy::Measured, 512, 3);
        assert_eq!(budget.committed_mb(), 512, "taken in full");
        let used = volume.count(TmpCount::Used);
        // What was written, and perhaps a block of the file's own extents.
        assert!((3..=4).contains(&used), "{used} MB");
        assert_eq!(budget.committed_mb(), used);
        assert_eq!(volume.count(TmpCount::Full), 512);
        assert_eq!(budget.committed_mb(), 512);
        assert_eq!(volume.count(TmpCount::Nothing), 0);
        assert_eq!(budget.committed_mb(), 0);
        volume.count(TmpCount::Used);
        drop(volume);
        assert_eq!(budget.committed_mb(), 0, "returned when the volume goes");
    }

    #[test]
    fn the_reserved_policy_counts_an_idle_volume_in_full() {
        let budget = Budget::new(4096);
        let mut volume = volume(&budget, TmpPolicy::Reserved, 512, 3);
        assert_eq!(volume.count(TmpCount::Used), 512);
        assert_eq!(budget.committed_mb(), 512);
        assert_eq!(volume.count(TmpCount::Nothing), 0);
    }
}
