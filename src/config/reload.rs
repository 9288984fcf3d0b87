//! What a `systemctl reload` must do to go from the running config to a new one.

use super::{Config, GeneratorConfig, SasLineConfig, TvConfig};

/// What changed in one kind of device section, matched by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Changes<T> {
    pub added: Vec<T>,
    /// Names of devices to stop.
    pub removed: Vec<String>,
    /// Devices whose settings changed (same name): restart them.
    pub changed: Vec<T>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }
}

impl<T> Changes<T> {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// A device section, known by its name.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for GeneratorConfig {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for SasLineConfig {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for TvConfig {
    fn name(&self) -> &str {
        &self.name
    }
}

fn changes<T: Named + PartialEq + Clone>(old: &[T], new: &[T]) -> Changes<T> {
    let mut c = Changes::default();
    for device in new {
        match old.iter().find(|o| o.name() == device.name()) {
            None => c.added.push(device.clone()),
            Some(before) if before != device => c.changed.push(device.clone()),
            Some(_) => {}
        }
    }
    c.removed = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.name() == o.name()))
        .map(|o| o.name().to_string())
        .collect();
    c
}

/// The difference between two configs, as work for the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReloadPlan {
    pub generators: Changes<GeneratorConfig>,
    /// SAS lines; a line whose machines changed is restarted as a whole.
    pub sas: Changes<SasLineConfig>,
    /// TVs; a TV whose relay changed is restarted like any other change.
    pub tvs: Changes<TvConfig>,
    pub store_changed: bool,
    /// `[upstream]` added, removed or changed: the uplink reconnects.
    pub upstream_changed: bool,
    pub log_level_changed: bool,
    /// Changes a reload cannot apply, as sentences for the log.
    pub needs_restart: Vec<String>,
}

impl ReloadPlan {
    pub fn is_empty(&self) -> bool {
        self.generators.is_empty()
            && self.sas.is_empty()
            && self.tvs.is_empty()
            && !self.store_changed
            && !self.upstream_changed
            && !self.log_level_changed
            && self.needs_restart.is_empty()
    }
}

pub fn reload_plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut plan = ReloadPlan {
        generators: changes(&old.generators, &new.generators),
        sas: changes(&old.sas, &new.sas),
        tvs: changes(&old.tvs, &new.tvs),
        store_changed: old.store != new.store,
        upstream_changed: old.upstream != new.upstream,
        log_level_changed: old.agent.log_level != new.agent.log_level,
        needs_restart: Vec::new(),
    };
    // The id is in every record and the data directory holds the open
    // database: neither can change under a running daemon.
    if old.agent.id != new.agent.id {
        plan.needs_restart.push(format!(
            "agent.id changed from {} to {}: restart the service to use it",
            old.agent.id, new.agent.id
        ));
    }
    if old.agent.data_dir != new.agent.data_dir {
        plan.needs_restart.push(format!(
            "agent.data_dir changed from {} to {}: restart the service to use it",
            old.agent.data_dir.display(),
            new.agent.data_dir.display()
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    fn config(text: &str) -> Config {
        parse(Path::new("t.toml"), text).expect("valid test config")
    }

    const GENS: &str = "[agent]\nid = \"a\"\n\
        [[generator]]\nname = \"keep\"\nclass = \"event\"\nrate = 1\n\
        [[generator]]\nname = \"tweak\"\nclass = \"event\"\nrate = 1\n\
        [[generator]]\nname = \"drop\"\nclass = \"event\"\nrate = 1\n";

    #[test]
    fn same_config_needs_nothing() {
        assert!(reload_plan(&config(GENS), &config(GENS)).is_empty());
    }

    #[test]
    fn generators_are_matched_by_name() {
        let new = "[agent]\nid = \"a\"\n\
            [[generator]]\nname = \"tweak\"\nclass = \"event\"\nrate = 2\n\
            [[generator]]\nname = \"keep\"\nclass = \"event\"\nrate = 1\n\
            [[generator]]\nname = \"fresh\"\nclass = \"metric\"\nrate = 1\n";
        let plan = reload_plan(&config(GENS), &config(new));
        let names = |gs: &[GeneratorConfig]| gs.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plan.generators.added), ["fresh"]);
        assert_eq!(names(&plan.generators.changed), ["tweak"]);
        assert_eq!(plan.generators.removed, ["drop"]);
        assert!(plan.sas.is_empty() && plan.tvs.is_empty());
        assert!(!plan.store_changed && !plan.log_level_changed && plan.needs_restart.is_empty());
        assert!(!plan.is_empty());
    }

    #[test]
    fn agent_changes_say_what_needs_a_restart() {
        let old = config("[agent]\nid = \"a\"\n");
        let new = config(
            "[agent]\nid = \"b\"\ndata_dir = \"/srv/sl\"\nlog_level = \"debug\"\n[store]\ncommit_ms = 20\n",
        );
        let plan = reload_plan(&old, &new);
        assert!(plan.store_changed && plan.log_level_changed);
        assert_eq!(
            plan.needs_restart,
            [
                "agent.id changed from a to b: restart the service to use it",
                "agent.data_dir changed from /var/lib/sitelink to /srv/sl: restart the service to use it",
            ]
        );
    }
}
