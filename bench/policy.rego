# The Grassroots Data Gateway read policy, written in Rego for the side-by-side benchmark
# (bench/bench_policy.py evaluates it with regorus on the same requests as policies.PolicyEngine).
#
# It mirrors policies/engine.py check for check, the first failure deciding the reason:
#   1 permission (role -> dataset:<name> -> action), 2 scenario known, 3 scenario is the role's work,
#   4 scenario needs the dataset, 5 local hour (UTC+8, no DST) within [start, end),
#   6 an active grant (approved, valid_from <= now < valid_until) for the scenario and dataset whose
#     scope is the caller's organisation or one of its ancestors (else revoked / expired / none),
#   7 requested fields within one such grant, 8 per-request record cap,
#   9 a reader without an organisation-wide role (a grid worker) reads only the micro-grids assigned to
#     them within their organisation: none assigned -> grid_scope_unassigned, none inside -> grid_scope_invalid.
# Grants are ranked most specific scope first, then longest lasting, then by id.
#
# data.permissions[role][resource][action] = true
# data.scenarios[code] = {roles_allowed, datasets: {name: [field]}, hours: [start, end], max_records,
#                         masking_profile}
# data.grants[scope][scenario] = [{id, level, status, valid_from, valid_until, datasets: {name: [field]}}]
# input = {subject: {user_id, org, roles, grids}, action, dataset, scenario, fields (null: all granted),
#          now (epoch seconds), record_count_hint (or null)}
# Times are whole epoch seconds here; the Python engine compares datetimes (microseconds).
package grassroots.policy

import rego.v1

zeros := "000000000000"

boundaries := [2, 4, 6, 9, 12]

# The 12-digit form of the caller's organisation (shorter codes are the same code, zero-padded).
org := concat("", [input.subject.org, substring(zeros, 0, 12 - count(input.subject.org))])

# Every code covering org: one per non-zero segment, plus the national root.
ancestors contains zeros

ancestors contains code if {
	some i, end in boundaries
	start := [0, 2, 4, 6, 9][i]
	substring(org, start, end - start) != substring(zeros, start, end - start)
	code := concat("", [substring(org, 0, end), substring(zeros, end, 12 - end)])
}

permitted if {
	some role in input.subject.roles
	data.permissions[role][concat("", ["dataset:", input.dataset])][input.action]
}

scenario := data.scenarios[input.scenario]

role_ok if {
	some role in input.subject.roles
	role in scenario.roles_allowed
}

local_hour := floor(((input.now + 28800) % 86400) / 3600)

within_hours if {
	scenario.hours[0] <= local_hour
	local_hour < scenario.hours[1]
}

candidates contains g if {
	some code in ancestors
	some g in data.grants[code][input.scenario]
	g.datasets[input.dataset]
}

active contains g if {
	some g in candidates
	g.status == "approved"
	g.valid_from <= input.now
	input.now < g.valid_until
}

lapsed(g) if g.status == "expired"

lapsed(g) if {
	g.status == "approved"
	g.valid_until <= input.now
}

# Ranking keys [-level, -valid_until, id]: ascending order is the engine's preference order.
ranked := sort([[0 - g.level, 0 - g.valid_until, g.id] | some g in active])

active_by_id := {g.id: g | some g in active}

# Requested fields without duplicates, first occurrence kept.
wanted := [f |
	some i, f in input.fields
	not f in array.slice(input.fields, 0, i)
]

fitting := ranked if input.fields == null

# (The comprehension sits in the body: regorus 0.2 cannot schedule one in a value guarded by `if`.)
fitting := found if {
	input.fields != null
	found := sort([k | some k in ranked; grants_all_fields(k[2])])
}

grants_all_fields(id) if {
	granted := {f | some f in active_by_id[id].datasets[input.dataset]}
	missing := {f | some f in input.fields} - granted
	count(missing) == 0
}

too_many if {
	input.record_count_hint != null
	input.record_count_hint > scenario.max_records
}

org_wide if {
	some role in input.subject.roles
	role in {"village_cadre", "township_officer", "county_officer"}
}

starts := [0, 2, 4, 6, 9]

# Length of org without its trailing zero segments: a village lies within org exactly when it starts
# with that stem (the root's stem is empty).
stem_len := n if {
	ends := [end | some i, end in boundaries; substring(org, starts[i], end - starts[i]) != substring(zeros, starts[i], end - starts[i])]
	n := max(array.concat([0], ends))
}

# A grid code: a village-level code (last segment non-zero, province non-zero), "-G" and 01-99.
grid_within_org(g) if {
	regex.match(`^[0-9]{12}-G(0[1-9]|[1-9][0-9])$`, g)
	substring(g, 0, 2) != "00"
	substring(g, 9, 3) != "000"
	startswith(g, substring(org, 0, stem_len))
}

grids_in contains g if {
	some g in input.subject.grids
	grid_within_org(g)
}

row_scope := [org] if org_wide

row_scope := found if {
	not org_wide
	found := sort([g | some g in grids_in])
}

refuse(code) := {"allowed": false, "reason": code}

decision := refuse("no_permission") if {
	not permitted
} else := refuse("unknown_scenario") if {
	not data.scenarios[input.scenario]
} else := refuse("scenario_not_for_role") if {
	not role_ok
} else := refuse("scenario_not_for_dataset") if {
	not scenario.datasets[input.dataset]
} else := refuse("outside_hours") if {
	not within_hours
} else := refuse("grant_revoked") if {
	count(active) == 0
	some g in candidates
	g.status == "revoked"
} else := refuse("grant_expired") if {
	count(active) == 0
	some g in candidates
	lapsed(g)
} else := refuse("no_active_grant") if {
	count(active) == 0
} else := refuse("field_not_granted") if {
	count(fitting) == 0
} else := refuse("quota_exceeded") if {
	too_many
} else := refuse("grid_scope_unassigned") if {
	not org_wide
	count(input.subject.grids) == 0
} else := refuse("grid_scope_invalid") if {
	not org_wide
	count(grids_in) == 0
} else := {
	"allowed": true,
	"reason": "allowed",
	"obligations": {
		"row_scope": row_scope,
		"fields": granted_fields,
		"masking_profile": scenario.masking_profile,
		"max_records": scenario.max_records,
		"grant_id": fitting[0][2],
	},
}

granted_fields := active_by_id[fitting[0][2]].datasets[input.dataset] if input.fields == null

granted_fields := wanted if input.fields != null
