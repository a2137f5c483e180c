"""The sealed 3A policies: schemas, loading with coded errors, authoring, realism floors."""

from engine.policies.policy_set import POLICY_IDS, PolicySet
