"""Amazon ECR lifecycle policies, evaluated offline on a repository history (tested in
tests/test_policy_evaluators.py; applied to the real policy in tests/test_terraform.py).

The rules, from the ECR User Guide ("Lifecycle policy evaluation rules", "Lifecycle policy
properties"):
- every rule is evaluated at once, then applied in rulePriority order; an image is expired by at
  most one rule, and an image that matches the tagging requirements of a rule cannot be expired by a
  rule of lower priority (a larger rulePriority); lower rules still count it;
- `tagged` selects images with a tag for every pattern of tagPatternList (`*` wildcards) or a tag
  starting with every prefix of tagPrefixList; `untagged` images without tags; `any` all images;
- imageCountMoreThan keeps the N most recently pushed of the selected images, sinceImagePushed
  expires those pushed more than N days ago; expiry always goes oldest first by push time (adding a
  tag later does not change it).
And from the ECR API reference (BatchDeleteImage, ImageFailure code ImageReferencedByManifestList):
an image an image index still references is not deleted while that index exists, so a platform image
of a kept multi-arch index survives an `untagged` rule, and goes once its index has gone.

`validate` enforces the documented constraints on a policy's shape, so a policy ECR would reject
fails here too.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tests.infra_readers.iam import glob_matches


@dataclass(frozen=True)
class Image:
    """One manifest in the repository: an image, an image index or an attestation manifest."""

    digest: str
    pushed_day: int
    tags: frozenset[str] = frozenset()
    # The digests an image index references (its platform images and attestations).
    references: tuple[str, ...] = field(default=())


def validate(policy: Mapping) -> None:
    """Raise ValueError where ECR would refuse the policy."""
    rules = policy["rules"]
    priorities = [rule["rulePriority"] for rule in rules]
    if len(set(priorities)) != len(priorities):
        raise ValueError("rulePriority values must be unique")
    untagged, selectors = 0, []
    for rule in rules:
        selection, action = rule["selection"], rule["action"]
        status = selection["tagStatus"]
        lists = [k for k in ("tagPatternList", "tagPrefixList") if k in selection]
        if status == "tagged":
            if len(lists) != 1 or not selection[lists[0]]:
                raise ValueError("a tagged rule needs exactly one of tagPatternList and tagPrefixList")
            selectors.append(tuple(selection[lists[0]]))
        elif status in ("untagged", "any"):
            if lists:
                raise ValueError(f"a rule on {status} images takes no tag list")
            untagged += status == "untagged"
        else:
            raise ValueError(f"tagStatus {status!r}")
        for pattern in selection.get("tagPatternList", []):
            if pattern.count("*") > 4:
                raise ValueError(f"{pattern!r}: at most four wildcards per pattern")
        count_type, number = selection["countType"], selection["countNumber"]
        if not isinstance(number, int) or number < 1:
            raise ValueError("countNumber must be a positive integer")
        if count_type == "imageCountMoreThan" and "countUnit" in selection:
            raise ValueError("countUnit only goes with sinceImagePushed")
        if count_type == "sinceImagePushed" and selection.get("countUnit") != "days":
            raise ValueError("sinceImagePushed needs countUnit days")
        if count_type not in ("imageCountMoreThan", "sinceImagePushed"):
            raise ValueError(f"countType {count_type!r}")
        if action != {"type": "expire"}:
            raise ValueError(f"action {action!r}")
    if untagged > 1:
        raise ValueError("only one rule may select untagged images")
    if len(set(selectors)) != len(selectors):
        raise ValueError("the tag lists of the rules must differ")
    anys = [rule["rulePriority"] for rule in rules if rule["selection"]["tagStatus"] == "any"]
    if anys and max(priorities) not in anys:
        raise ValueError("a rule on any images must have the highest rulePriority")


def _selects(selection: Mapping, image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not image.tags
    if not image.tags:
        return False
    if "tagPatternList" in selection:
        return all(any(glob_matches(p, tag) for tag in image.tags) for p in selection["tagPatternList"])
    return all(any(tag.startswith(p) for tag in image.tags) for p in selection["tagPrefixList"])


def _marked(selection: Mapping, selected: list[Image], today: int) -> set[str]:
    newest_first = sorted(selected, key=lambda image: image.pushed_day, reverse=True)
    if selection["countType"] == "imageCountMoreThan":
        return {image.digest for image in newest_first[selection["countNumber"] :]}
    return {image.digest for image in selected if today - image.pushed_day > selection["countNumber"]}


def expired_by_policy(policy: Mapping, images: Iterable[Image], today: int) -> dict[str, int]:
    """{digest: rulePriority} of the images the policy expires on `today`."""
    images = list(images)
    rules = sorted(policy["rules"], key=lambda rule: rule["rulePriority"])
    claimed: set[str] = set()
    expired: dict[str, int] = {}
    for rule in rules:
        selected = [image for image in images if _selects(rule["selection"], image)]
        for digest in _marked(rule["selection"], selected, today) - claimed:
            expired[digest] = rule["rulePriority"]
        claimed |= {image.digest for image in selected}
    return expired


def run(policy: Mapping, repository: Mapping[str, Image], today: int) -> dict[str, Image]:
    """The repository after one lifecycle run: what the policy expires is deleted, except images an
    index that is still there references (ECR refuses: ImageReferencedByManifestList)."""
    expired = expired_by_policy(policy, repository.values(), today)
    remaining = {digest: image for digest, image in repository.items() if digest not in expired}
    referenced = {ref for image in remaining.values() for ref in image.references}
    # The index and its images expire in the same run: the images go in a later run.
    referenced |= {ref for digest in expired for ref in repository[digest].references}
    return {digest: image for digest, image in repository.items() if digest in remaining or digest in referenced}


def complete(repository: Mapping[str, Image], digest: str) -> bool:
    """The image is there with everything it references (a pull of any platform works)."""
    return digest in repository and all(complete(repository, ref) for ref in repository[digest].references)
