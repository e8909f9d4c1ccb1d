//! Environments' /tmp volumes: each a filesystem of its own, bounded by the budget, and gone
//! from the host (image, loop device) when dropped. Needs root, as the sandbox does.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::{Duration, Instant};

use gust_sandbox::TmpCount;
use gust_sandbox::linux::tmp_volume::{TmpPolicy, TmpVolume, TmpVolumes, VolumeError};

/// Loop devices whose backing file is under `dir` (a deleted file shows as "… (deleted)").
fn loop_devices_under(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|file| file.starts_with(&dir))
        })
        .count()
}

#[test]
fn volumes_are_bounded_by_the_budget_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let mount_point = dir.path().join("tmp");
    std::fs::create_dir_all(&mount_point).unwrap();
    // One volume is made (and kept ready) at start: under the reserved policy an empty one
    // counts for nothing. The budget has room for two taken by environments.
    let volumes = TmpVolumes::start(images.clone(), mount_point, 1100, TmpPolicy::Reserved, 0)
        .expect("/tmp volumes need root, loop devices and mkfs.ext4");
    assert_eq!(volumes.usage(), (0, 1100));
    let first = volumes.take(512).unwrap();
    assert_eq!(volumes.usage(), (512, 1100));
    let second = volumes.take(512).unwrap();
    assert_eq!(volumes.usage(), (1024, 1100));
    assert!(matches!(
        volumes.take(512),
        Err(VolumeError::NoRoom { wanted: 512, .. })
    ));
    assert!(matches!(
        volumes.take(1024),
        Err(VolumeError::NoRoom { .. })
    ));
    // The image files are unlinked as soon as their loop device holds them.
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 0);
    assert_eq!(loop_devices_under(&images), 2);

    drop(first);
    let third = volumes.take(512).unwrap();
    assert_eq!(third.size_mb, 512);
    drop((second, third));
    assert_eq!(volumes.usage(), (0, 1100));
    let started = Instant::now();
    while loop_devices_under(&images) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "loop devices outlived their volumes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `step` on `path` in `volume`'s mount namespace, from a thread that enters it.
fn inside(volume: &TmpVolume, path: &Path, step: impl FnOnce(&Path) + Send) {
    use std::os::fd::AsRawFd;
    let namespace = volume.mount_namespace.as_raw_fd();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(2) gives only this thread its own filesystem context (which
                // setns into a mount namespace needs).
                assert_eq!(unsafe { libc::unshare(libc::CLONE_FS) }, 0);
                // SAFETY: setns(2) moves only this thread into the namespace of a descriptor
                // the volume keeps open.
                assert_eq!(unsafe { libc::setns(namespace, libc::CLONE_NEWNS) }, 0);
                step(path);
            })
            .join()
            .unwrap()
    });
}

/// Writes `mb` MB to `path` and syncs it.
fn write(path: &Path, mb: usize) {
    let file = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &file, &vec![7; mb << 20]).unwrap();
    file.sync_all().unwrap();
}

#[test]
fn under_the_measured_policy_an_idle_volume_counts_what_its_image_holds() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let mount_point = dir.path().join("tmp");
    std::fs::create_dir_all(&mount_point).unwrap();
    let volumes = TmpVolumes::start(images, mount_point.clone(), 1100, TmpPolicy::Measured, 0)
        .expect("/tmp volumes need root, loop devices and mkfs.ext4");
    // The volume made ahead is an empty filesystem: it counts the MB or so it holds.
    let (ahead, _) = volumes.usage();
    assert!((1..=4).contains(&ahead), "{ahead} MB");
    let mut first = volumes.take(512).unwrap();
    assert_eq!(volumes.usage(), (512, 1100), "taken: counted in full");
    let mut second = volumes.take(512).unwrap();
    assert!(matches!(
        volumes.take(512),
        Err(VolumeError::NoRoom { wanted: 512, .. })
    ));
    // Idle, the two count what they hold: room for more.
    let written = mount_point.join("written");
    inside(&first, &written, |path| write(path, 100));
    let used = first.count(TmpCount::Used);
    assert!((100..=104).contains(&used), "100 MB written: {used} MB");
    // A deleted file's blocks go back to the host's disk.
    inside(&first, &written, |path| std::fs::remove_file(path).unwrap());
    let after = first.count(TmpCount::Used);
    assert!(after <= 4, "deleted: {after} MB");
    inside(&first, &written, |path| write(path, 100));
    let used = first.count(TmpCount::Used);
    let empty = second.count(TmpCount::Used);
    assert!((1..=4).contains(&empty), "{empty} MB");
    assert_eq!(volumes.usage(), (used + empty, 1100));
    let third = volumes.take(512).unwrap();
    // Both wake: counted in full again although that passes the budget.
    first.count(TmpCount::Full);
    second.count(TmpCount::Full);
    assert_eq!(volumes.usage(), (1536, 1100));
    assert!(volumes.take(512).is_err());
    drop((first, second, third));
    assert_eq!(volumes.usage(), (0, 1100));
}
