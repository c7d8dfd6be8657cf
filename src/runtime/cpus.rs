//! Which CPUs the shards run on.
//!
//! Usable CPUs are the process affinity mask intersected with the cgroup v2
//! `cpuset.cpus.effective` of the process's own cgroup; the cgroup `cpu.max`
//! quota (the smallest along the path to the root) caps how many are used.
//! `--cpus` and `--shards` choose among them; asking for a CPU outside the
//! usable set is an error, never a silent fallback.

use std::path::{Path, PathBuf};

pub(crate) use crate::config::CpuList;

/// What this process may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Usable {
    /// CPUs allowed by affinity and cpuset, ascending.
    pub cpus: Vec<usize>,
    /// Whole CPUs granted by the `cpu.max` quota, rounded up, when limited.
    pub quota: Option<usize>,
}

impl Usable {
    /// Reads this process's affinity and cgroup.
    #[must_use]
    pub(crate) fn of_this_process() -> Usable {
        let affinity: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|core| core.id)
            .collect();
        Usable::from_sources(
            affinity,
            Path::new("/proc/self/cgroup"),
            Path::new("/sys/fs/cgroup"),
        )
    }

    /// Combines an affinity mask with the cgroup found through the
    /// `/proc/self/cgroup`-format file `membership` under the cgroup v2
    /// mount `root`. Missing files mean no constraint from that source.
    #[must_use]
    pub(crate) fn from_sources(mut affinity: Vec<usize>, membership: &Path, root: &Path) -> Usable {
        affinity.sort_unstable();
        let Some(dir) = own_cgroup(membership, root) else {
            return Usable {
                cpus: affinity,
                quota: None,
            };
        };
        let ancestors: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|p| p.starts_with(root))
            .map(Path::to_path_buf)
            .collect();
        let cpuset = ancestors
            .iter()
            .find_map(|d| std::fs::read_to_string(d.join("cpuset.cpus.effective")).ok())
            .and_then(|text| text.parse::<CpuList>().ok());
        let cpus = match cpuset {
            Some(CpuList(allowed)) => affinity
                .into_iter()
                .filter(|c| allowed.contains(c))
                .collect(),
            None => affinity,
        };
        let quota = ancestors
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cpu.max")).ok())
            .filter_map(|text| quota_cpus(&text))
            .min();
        Usable { cpus, quota }
    }

    /// The CPUs to run shards on, one shard each.
    ///
    /// # Errors
    /// A sentence naming the fix when the request cannot be met.
    pub(crate) fn choose(
        &self,
        shards: Option<usize>,
        cpus: Option<&CpuList>,
    ) -> Result<Vec<usize>, String> {
        if self.cpus.is_empty() {
            return Err("no usable CPU: check the process affinity and the cgroup cpuset".into());
        }
        let candidates = match cpus {
            Some(CpuList(wanted)) => {
                if let Some(bad) = wanted.iter().find(|c| !self.cpus.contains(c)) {
                    return Err(format!(
                        "CPU {bad} is not usable by this process (usable: {}): choose CPUs from that list with --cpus",
                        CpuList(self.cpus.clone())
                    ));
                }
                wanted.clone()
            }
            None => self.cpus.clone(),
        };
        let count = match shards {
            Some(n) if n > candidates.len() => {
                return Err(format!(
                    "{n} shards need {n} CPUs but only {} are usable ({}): lower --shards or allow more CPUs",
                    candidates.len(),
                    CpuList(candidates)
                ));
            }
            Some(n) => n,
            // An explicit CPU list is honoured whole; otherwise the quota caps it.
            None if cpus.is_some() => candidates.len(),
            None => self
                .quota
                .map_or(candidates.len(), |q| q.min(candidates.len())),
        };
        Ok(candidates[..count].to_vec())
    }
}

/// The directory of this process's cgroup v2, from a `/proc/self/cgroup` file.
fn own_cgroup(membership: &Path, root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(membership).ok()?;
    let relative = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = root.join(relative.trim().trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Whole CPUs in a `cpu.max` value (`max 100000` or `150000 100000`).
fn quota_cpus(text: &str) -> Option<usize> {
    let mut fields = text.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    let period: u64 = fields.next().unwrap_or("100000").parse().ok()?;
    if period == 0 {
        return None;
    }
    usize::try_from(quota.div_ceil(period).max(1)).ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{CpuList, Usable};

    fn list(text: &str) -> Vec<usize> {
        text.parse::<CpuList>().unwrap().0
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(list("1"), [1]);
        assert_eq!(list("0,2-3"), [0, 2, 3]);
        assert_eq!(list("3,1-2,2\n"), [1, 2, 3]);
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("a".parse::<CpuList>().is_err());
        assert!("".parse::<CpuList>().is_err());
    }

    /// A fake `/sys/fs/cgroup` holding `/kubepods/pod` with the given files.
    fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cgroup");
        std::fs::create_dir_all(root.join("kubepods/pod")).unwrap();
        for (path, text) in files {
            std::fs::write(root.join(path), text).unwrap();
        }
        let membership = dir.path().join("self-cgroup");
        std::fs::write(&membership, "0::/kubepods/pod\n").unwrap();
        (dir, membership)
    }

    fn usable(files: &[(&str, &str)], affinity: &[usize]) -> Usable {
        let (dir, membership) = fixture(files);
        Usable::from_sources(affinity.to_vec(), &membership, &dir.path().join("cgroup"))
    }

    #[test]
    fn cpuset_intersects_affinity() {
        let found = usable(
            &[("kubepods/pod/cpuset.cpus.effective", "2-5\n")],
            &[0, 1, 2, 3],
        );
        assert_eq!(
            found,
            Usable {
                cpus: vec![2, 3],
                quota: None
            }
        );
    }

    #[test]
    fn cpuset_is_inherited_from_an_ancestor() {
        let found = usable(&[("kubepods/cpuset.cpus.effective", "1")], &[0, 1, 2]);
        assert_eq!(found.cpus, [1]);
    }

    #[test]
    fn smallest_quota_along_the_path_wins() {
        let found = usable(
            &[
                ("kubepods/cpu.max", "250000 100000\n"),
                ("kubepods/pod/cpu.max", "max 100000\n"),
            ],
            &[0, 1, 2, 3],
        );
        assert_eq!(found.quota, Some(3));
        let found = usable(&[("kubepods/pod/cpu.max", "50000 100000")], &[0, 1]);
        assert_eq!(found.quota, Some(1));
        assert_eq!(found.choose(None, None).unwrap(), [0]);
    }

    #[test]
    fn no_cgroup_v2_means_affinity_only() {
        let dir = tempfile::tempdir().unwrap();
        let membership = dir.path().join("self-cgroup");
        std::fs::write(&membership, "12:cpuset:/docker/abc\n").unwrap();
        let found = Usable::from_sources(vec![1, 0], &membership, Path::new("/nonexistent"));
        assert_eq!(
            found,
            Usable {
                cpus: vec![0, 1],
                quota: None
            }
        );
    }

    #[test]
    fn choosing() {
        let usable = Usable {
            cpus: vec![0, 1, 2, 3],
            quota: Some(2),
        };
        assert_eq!(usable.choose(None, None).unwrap(), [0, 1]);
        assert_eq!(usable.choose(Some(3), None).unwrap(), [0, 1, 2]);
        assert_eq!(
            usable.choose(None, Some(&CpuList(vec![1, 3]))).unwrap(),
            [1, 3]
        );
        assert_eq!(
            usable.choose(Some(1), Some(&CpuList(vec![2, 3]))).unwrap(),
            [2]
        );
        let error = usable.choose(None, Some(&CpuList(vec![7]))).unwrap_err();
        assert!(error.starts_with("CPU 7 is not usable"), "{error}");
        assert!(usable.choose(Some(5), None).is_err());
    }
}
