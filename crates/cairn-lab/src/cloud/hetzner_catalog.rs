//! Hetzner Cloud's catalog as the emulation offers it: locations,
//! datacenters, server types and images, with the read-only endpoints the
//! reference gives them (`GET /locations`, `/datacenters`, `/server_types`,
//! `/images`, each also `/{id}`), and the "ID or name" lookups that create
//! requests use. Every server boots the lab's Debian image, whatever image
//! it names; the catalog only decides what a request may name.

use serde_json::{json as j, Value};

/// Locations: name, datacenter, network zone, city, country.
pub const LOCATIONS: &[(&str, &str, &str, &str, &str)] = &[
    ("fsn1", "fsn1-dc14", "eu-central", "Falkenstein", "DE"),
    ("nbg1", "nbg1-dc3", "eu-central", "Nuremberg", "DE"),
    ("hel1", "hel1-dc2", "eu-central", "Helsinki", "FI"),
    ("ash", "ash-dc1", "us-east", "Ashburn, VA", "US"),
    ("hil", "hil-dc1", "us-west", "Hillsboro, OR", "US"),
    ("sin", "sin-dc1", "ap-southeast", "Singapore", "SG"),
];

/// Server types: name, cores, memory (GB), disk (GB), cpu type.
pub const SERVER_TYPES: &[(&str, u32, u32, u32, &str)] = &[
    ("cx22", 2, 4, 40, "shared"),
    ("cx32", 4, 8, 80, "shared"),
    ("cx42", 8, 16, 160, "shared"),
    ("cx52", 16, 32, 320, "shared"),
    ("cpx11", 2, 2, 40, "shared"),
    ("cpx21", 3, 4, 80, "shared"),
    ("cpx31", 4, 8, 160, "shared"),
    ("cpx41", 8, 16, 240, "shared"),
    ("cpx51", 16, 32, 360, "shared"),
    ("cax11", 2, 4, 40, "shared"),
    ("ccx13", 2, 8, 80, "dedicated"),
];

/// Images: name, os flavor, os version.
pub const IMAGES: &[(&str, &str, &str)] = &[
    ("ubuntu-20.04", "ubuntu", "20.04"),
    ("ubuntu-22.04", "ubuntu", "22.04"),
    ("ubuntu-24.04", "ubuntu", "24.04"),
    ("debian-11", "debian", "11"),
    ("debian-12", "debian", "12"),
    ("rocky-9", "rocky", "9"),
    ("fedora-41", "fedora", "41"),
];

/// Catalog ids: the 1-based position in each table (locations and their one
/// datacenter share an id). Images get ids of their own range, so that an
/// image id is never mistaken for a server type's.
const IMAGE_ID_BASE: u64 = 100_000;

/// Where a lookup looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Location,
    Datacenter,
    ServerType,
    Image,
}

impl Kind {
    fn names(self) -> Vec<&'static str> {
        match self {
            Kind::Location => LOCATIONS.iter().map(|l| l.0).collect(),
            Kind::Datacenter => LOCATIONS.iter().map(|l| l.1).collect(),
            Kind::ServerType => SERVER_TYPES.iter().map(|t| t.0).collect(),
            Kind::Image => IMAGES.iter().map(|i| i.0).collect(),
        }
    }
    fn base(self) -> u64 {
        match self {
            Kind::Image => IMAGE_ID_BASE,
            _ => 0,
        }
    }
    /// Id of the entry at `index`.
    pub fn id(self, index: usize) -> u64 {
        self.base() + index as u64 + 1
    }
    /// The index of the entry with this id.
    pub fn by_id(self, id: u64) -> Option<usize> {
        let i = id.checked_sub(self.base() + 1)? as usize;
        (i < self.names().len()).then_some(i)
    }
    /// The index of the entry named `name`.
    pub fn by_name(self, name: &str) -> Option<usize> {
        self.names().iter().position(|n| *n == name)
    }
    /// The index of the entry `v` names: an integer id, a name, or a string
    /// of digits that is an id (the reference's "ID or name").
    pub fn resolve(self, v: &Value) -> Option<usize> {
        match v {
            Value::Number(n) => n.as_u64().and_then(|id| self.by_id(id)),
            Value::String(s) => self
                .by_name(s)
                .or_else(|| s.parse::<u64>().ok().and_then(|id| self.by_id(id))),
            _ => None,
        }
    }
    /// The JSON object of the entry at `index`.
    pub fn json(self, index: usize) -> Value {
        match self {
            Kind::Location => location_json(index),
            Kind::Datacenter => datacenter_json(index),
            Kind::ServerType => server_type_json(index),
            Kind::Image => image_json(index),
        }
    }
    /// Every entry's JSON object.
    pub fn all(self) -> Vec<Value> {
        (0..self.names().len()).map(|i| self.json(i)).collect()
    }
}

/// A location as the reference shows it.
pub fn location_json(i: usize) -> Value {
    let (name, _, zone, city, country) = LOCATIONS[i];
    j!({
        "id": Kind::Location.id(i), "name": name, "description": format!("{city} DC Park 1"),
        "country": country, "city": city, "latitude": 0.0, "longitude": 0.0,
        "network_zone": zone
    })
}

/// A datacenter (one per location) as the reference shows it.
pub fn datacenter_json(i: usize) -> Value {
    let (_, dc, _, city, _) = LOCATIONS[i];
    let types: Vec<u64> = (0..SERVER_TYPES.len())
        .map(|t| Kind::ServerType.id(t))
        .collect();
    j!({
        "id": Kind::Datacenter.id(i), "name": dc, "description": format!("{city} virtual DC"),
        "location": location_json(i),
        "server_types": {"supported": types, "available": types, "available_for_migration": types}
    })
}

/// A server type, with a price in every location.
pub fn server_type_json(i: usize) -> Value {
    let (name, cores, memory, disk, cpu) = SERVER_TYPES[i];
    let price = |per_hour: f64| j!({"net": format!("{per_hour:.10}"), "gross": format!("{:.10}", per_hour * 1.19)});
    let hourly = 0.001 * f64::from(cores) + 0.0005 * f64::from(memory);
    j!({
        "id": Kind::ServerType.id(i), "name": name, "description": name.to_uppercase(),
        "cores": cores, "memory": memory, "disk": disk, "deprecated": false, "deprecation": null,
        "prices": LOCATIONS.iter().map(|l| j!({
            "location": l.0, "price_hourly": price(hourly), "price_monthly": price(hourly * 730.0),
            "included_traffic": 21990232555520u64, "price_per_tb_traffic": price(1.0)
        })).collect::<Vec<_>>(),
        "storage_type": "local", "cpu_type": cpu,
        "architecture": if name.starts_with("cax") { "arm" } else { "x86" },
        "included_traffic": 21990232555520u64
    })
}

/// A system image.
pub fn image_json(i: usize) -> Value {
    let (name, flavor, version) = IMAGES[i];
    j!({
        "id": Kind::Image.id(i), "type": "system", "status": "available", "name": name,
        "description": format!("{} {version}", capitalize(flavor)), "image_size": null,
        "disk_size": 5, "created": "2024-01-01T00:00:00+00:00", "created_from": null,
        "bound_to": null, "os_flavor": flavor, "os_version": version, "rapid_deploy": true,
        "protection": {"delete": false}, "deprecated": null, "deleted": null,
        "labels": {}, "architecture": "x86"
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_both_resolve() {
        let i = Kind::ServerType.by_name("cpx11").unwrap();
        let id = Kind::ServerType.id(i);
        assert_eq!(Kind::ServerType.resolve(&j!(id)), Some(i));
        assert_eq!(Kind::ServerType.resolve(&j!(id.to_string())), Some(i));
        assert_eq!(Kind::ServerType.resolve(&j!("cpx11")), Some(i));
        assert_eq!(Kind::ServerType.resolve(&j!("cpx99")), None);
        // an image id is not a server type id, and the other way round
        assert_eq!(Kind::Image.resolve(&j!(id)), None);
        assert_eq!(Kind::ServerType.resolve(&j!(Kind::Image.id(0))), None);
        assert_eq!(
            Kind::Datacenter.resolve(&j!("ash-dc1")),
            Kind::Location.by_name("ash")
        );
        assert_eq!(Kind::Location.json(3)["network_zone"], "us-east");
    }
}
