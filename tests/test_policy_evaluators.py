"""The offline evaluators the Terraform tests rely on: IAM policy evaluation (tests/infra_readers/iam.py)
and ECR lifecycle policies (tests/infra_readers/ecr_lifecycle.py), each against the behaviour AWS
documents, so that a guardrail test fails for the reason AWS would deny or expire."""

import pytest

from tests.infra_readers import ecr_lifecycle, iam
from tests.infra_readers.ecr_lifecycle import Image

ROLE = "arn:aws:iam::111122223333:role/titanic-dev-x"
CLUSTER = "arn:aws:eks:us-east-1:111122223333:cluster/titanic-prod"


def allow(action="*", resource="*", **extra):
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}]}


def deny(action="*", resource="*", **extra):
    return {"Statement": [{"Effect": "Deny", "Action": action, "Resource": resource, **extra}]}


# --------------------------------------------------------------------------- IAM: the decision


def test_an_explicit_deny_in_any_policy_wins():
    request = iam.Request("s3:PutObject", "arn:aws:s3:::bucket/key")
    assert iam.is_allowed(request, [allow()])
    assert iam.decide(request, [allow(), deny("s3:*")]) == "explicit deny ()"
    # A deny in the boundary applies although the boundary grants nothing by itself.
    assert not iam.is_allowed(request, [allow()], boundary={"Statement": allow()["Statement"] + deny()["Statement"]})


def test_the_boundary_and_the_identity_policy_must_both_allow():
    request = iam.Request("ec2:RunInstances", "*")
    assert iam.decide(request, [allow("ec2:*")], boundary=allow("s3:*")) == "implicit deny (boundary)"
    assert iam.decide(request, [allow("s3:*")], boundary=allow("ec2:*")) == "implicit deny"
    assert iam.is_allowed(request, [allow("ec2:Run*")], boundary=allow("ec2:*"))


def test_not_action_and_not_resource():
    ceiling = {"Statement": [{"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}]}
    assert iam.is_allowed(iam.Request("ec2:RunInstances", "*"), [ceiling])
    assert not iam.is_allowed(iam.Request("iam:CreateRole", ROLE), [ceiling])
    zone = "arn:aws:route53:::hostedzone/ZOWN"
    others = {"Statement": [{"Effect": "Deny", "Action": "route53:*", "NotResource": [zone]}]}
    assert iam.is_allowed(iam.Request("route53:ChangeResourceRecordSets", zone), [allow(), others])
    assert not iam.is_allowed(iam.Request("route53:ChangeResourceRecordSets", zone + "X"), [allow(), others])


def test_actions_match_case_insensitively_resources_case_sensitively():
    assert iam.action_matches("S3:putobj*", "s3:PutObject")
    assert iam.arn_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b")
    assert not iam.arn_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::BUCKET/a")
    assert iam.arn_matches("arn:aws:eks:*:111122223333:cluster/titanic-?rod", CLUSTER)


def test_a_wildcard_never_spans_the_parts_of_an_arn():
    # The account part is matched on its own: a pattern cannot swallow "region:account".
    assert not iam.arn_matches("arn:aws:eks:*:cluster/titanic-prod", CLUSTER)
    assert iam.arn_matches(
        "arn:aws:logs:*:111122223333:log-group:*titanic-prod*",
        "arn:aws:logs:us-east-1:111122223333:log-group:/aws/eks/titanic-prod/cluster:log-stream:x",
    )


# --------------------------------------------------------------------------- IAM: conditions


@pytest.mark.parametrize(
    ("operator", "values", "context", "expected"),
    [
        ("StringEquals", ["prod"], {"k": "prod"}, True),
        ("StringEquals", ["prod"], {"k": "Prod"}, False),
        ("StringEqualsIgnoreCase", ["prod"], {"k": "Prod"}, True),
        ("StringEquals", ["prod"], {}, False),  # a missing key fails a positive operator
        ("StringNotEquals", ["prod"], {}, True),  # and satisfies a negated one
        ("StringNotEquals", ["prod", "dev"], {"k": "dev"}, False),
        ("StringNotLike", ["p*"], {}, True),
        ("StringNotLike", ["p*"], {"k": "prod"}, False),
        ("StringLike", ["*-titanic.example.com"], {"k": "a-titanic.example.com"}, True),
        ("StringEqualsIfExists", ["prod"], {}, True),
        ("ArnNotEquals", ["arn:aws:iam::1:policy/b"], {}, True),
        ("ArnNotEquals", ["arn:aws:iam::1:policy/b"], {"k": "arn:aws:iam::1:policy/b"}, False),
        ("ArnLike", ["arn:aws:iam::*:policy/b*"], {"k": "arn:aws:iam::1:policy/boundary"}, True),
        ("Null", ["false"], {"k": "owned"}, True),
        ("Null", ["false"], {}, False),
        ("Null", ["true"], {}, True),
        ("Bool", ["true"], {"k": "True"}, True),
        ("ForAllValues:StringLike", ["host", "*-host"], {"k": ["host", "a-host"]}, True),
        ("ForAllValues:StringLike", ["host", "*-host"], {"k": ["host", "other"]}, False),
        ("ForAllValues:StringEquals", ["x"], {}, True),  # vacuously true without the key
        ("ForAnyValue:StringEquals", ["x"], {}, False),
        ("ForAnyValue:StringEquals", ["x"], {"k": ["y", "x"]}, True),
    ],
)
def test_condition_operators(operator, values, context, expected):
    assert iam.condition_holds(operator, "k", values, context) is expected


def test_unsupported_operators_raise_instead_of_guessing():
    with pytest.raises(NotImplementedError):
        iam.condition_holds("NumericLessThan", "k", ["1"], {"k": "0"})
    with pytest.raises(NotImplementedError):
        iam.condition_holds("ForSomeValues:StringEquals", "k", ["1"], {"k": "1"})


def test_trust_policy_needs_the_principal_the_action_and_the_conditions():
    provider = "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"
    trust = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sts:AssumeRoleWithWebIdentity"],
                "Principal": {"Federated": provider},
                "Condition": {"StringEquals": {"sub": ["repo:o/r:environment:prod"]}},
            }
        ]
    }
    assume = "sts:AssumeRoleWithWebIdentity"
    assert iam.trust_allows(trust, "Federated", provider, assume, {"sub": "repo:o/r:environment:prod"})
    assert not iam.trust_allows(trust, "Federated", provider, assume, {"sub": "repo:o/r:pull_request"})
    assert not iam.trust_allows(trust, "Federated", provider + "x", assume, {"sub": "repo:o/r:environment:prod"})
    assert not iam.trust_allows(trust, "Federated", provider, "sts:AssumeRole", {"sub": "repo:o/r:environment:prod"})


# --------------------------------------------------------------------------- IAM: the Service Authorization Reference


def test_resource_tags_reach_only_the_actions_that_support_them():
    tags = {"Environment": "prod"}
    # EKS clusters support aws:ResourceTag ...
    assert iam.request("eks:CreateAccessEntry", CLUSTER, tags).context == {"aws:ResourceTag/Environment": "prod"}
    # ... rds-db:connect has no condition key at all: a tag-based deny can never stop it.
    dbuser = "arn:aws:rds-db:us-east-1:1:dbuser:db-ABC/titanic_app"
    assert iam.request("rds-db:connect", dbuser, tags).context == {}
    tag_deny = deny(Condition={"StringEquals": {"aws:ResourceTag/Environment": "prod"}})
    assert iam.is_allowed(iam.request("rds-db:connect", dbuser, tags), [allow(), tag_deny])
    assert not iam.is_allowed(iam.request("eks:CreateAccessEntry", CLUSTER, tags), [allow(), tag_deny])


def test_resource_types_and_actions_come_from_the_reference():
    assert iam.resource_type("arn:aws:s3:::bucket") == "bucket"
    assert iam.resource_type("arn:aws:s3:::bucket/titanic/prod.tfstate") == "object"
    assert iam.resource_type("arn:aws:route53:::hostedzone/Z1") == "hostedzone"
    assert iam.action_exists("route53:ChangeResourceRecordSets")
    assert not iam.action_exists("eks:CreateClusterAdmin")
    with pytest.raises(KeyError):
        iam.request("eks:CreateClusterAdmin", CLUSTER)
    assert "s3:PutObject" in iam.actions_matching("s3:Put*")
    assert iam.names_unknown_actions(allow(["s3:PutObject", "s3:Nothing*", "eks:Nope"])) == ["s3:Nothing*", "eks:Nope"]
    policy = allow(
        "route53:ChangeResourceRecordSets",
        Condition={
            "ForAllValues:StringLike": {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["x"],
                "route53:Bogus": ["y"],
            }
        },
    )
    assert iam.unknown_condition_keys(policy) == {"route53:Bogus"}


# --------------------------------------------------------------------------- ECR lifecycle


def rule(priority, status, count_type="imageCountMoreThan", number=1, **selection):
    selection = {"tagStatus": status, "countType": count_type, "countNumber": number, **selection}
    if count_type == "sinceImagePushed":
        selection["countUnit"] = "days"
    return {"rulePriority": priority, "selection": selection, "action": {"type": "expire"}}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([rule(1, "tagged", tagPatternList=["a*"]), rule(1, "untagged")], "unique"),
        ([rule(1, "tagged")], "exactly one"),
        ([rule(1, "untagged", tagPatternList=["a"])], "no tag list"),
        ([rule(1, "untagged"), rule(2, "untagged", "sinceImagePushed")], "only one rule"),
        ([rule(1, "any"), rule(2, "untagged")], "highest rulePriority"),
        ([rule(1, "tagged", tagPatternList=["*a*b*c*d*"])], "four wildcards"),
        ([rule(1, "tagged", number=0, tagPatternList=["a"])], "positive"),
        ([rule(1, "tagged", tagPatternList=["a"]), rule(2, "tagged", tagPatternList=["a"])], "must differ"),
    ],
)
def test_lifecycle_policies_ecr_would_refuse_are_refused(rules, message):
    with pytest.raises(ValueError, match=message):
        ecr_lifecycle.validate({"rules": rules})


def test_a_higher_rule_protects_what_it_selects_and_lower_rules_still_count_it():
    images = [Image(f"r{i}", i, frozenset({f"1.0.{i}", f"sha{i}"})) for i in range(5)]
    images += [Image(f"s{i}", 10 + i, frozenset({f"sha{10 + i}"})) for i in range(3)]
    policy = {
        "rules": [
            rule(1, "tagged", number=9999, tagPatternList=["*.*.*"]),
            rule(2, "tagged", number=4, tagPatternList=["sha*"]),
        ]
    }
    expired = ecr_lifecycle.expired_by_policy(policy, images, today=20)
    # Rule 2 counts all eight sha-tagged images and marks the four oldest, all releases: kept.
    assert expired == {}
    policy["rules"][0]["selection"]["tagPatternList"] = ["9.*.*"]
    assert set(ecr_lifecycle.expired_by_policy(policy, images, today=20)) == {"r0", "r1", "r2", "r3"}


def test_expiry_by_age_and_untagged_rule():
    images = [Image("old", 0), Image("new", 9), Image("tagged-old", 0, frozenset({"x"}))]
    policy = {"rules": [rule(1, "untagged", "sinceImagePushed", 7)]}
    assert ecr_lifecycle.expired_by_policy(policy, images, today=10) == {"old": 1}


def test_images_an_index_still_references_are_kept_and_go_with_it():
    repository = {
        "index": Image("index", 0, frozenset({"sha"}), ("amd64", "arm64")),
        "amd64": Image("amd64", 0),
        "arm64": Image("arm64", 0),
    }
    untagged = {"rules": [rule(1, "untagged", "sinceImagePushed", 7)]}
    after = ecr_lifecycle.run(untagged, repository, today=30)
    assert after == repository and ecr_lifecycle.complete(after, "index")
    everything = {
        "rules": [
            rule(1, "untagged", "sinceImagePushed", 7),
            rule(2, "tagged", "sinceImagePushed", 7, tagPatternList=["*"]),
        ]
    }
    after = ecr_lifecycle.run(everything, repository, today=30)
    assert set(after) == {"amd64", "arm64"}  # the index went; its images go in the next run
    assert ecr_lifecycle.run(everything, after, today=31) == {}


# --------------------------------------------------------------------------- IAM: resource policies, context


def test_a_resource_policy_deny_applies_to_the_principals_it_names():
    repository = "arn:aws:ecr:us-east-1:111122223333:repository/titanic-api"
    pusher = "arn:aws:iam::111122223333:role/titanic-dev-image-push"
    only_the_pusher = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": ["ecr:PutImage"],
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": pusher}},
            }
        ]
    }
    for principal, expected in ((pusher, True), (ROLE, False)):
        request = iam.request("ecr:PutImage", repository, None, **{"aws:PrincipalArn": principal})
        assert iam.is_allowed(request, [allow()], resource_policies=[only_the_pusher]) is expected
    named = {"Statement": [{"Effect": "Deny", "Principal": {"AWS": [ROLE]}, "Action": "ecr:*"}]}
    request = iam.request("ecr:PutImage", repository, None, **{"aws:PrincipalArn": pusher})
    assert iam.is_allowed(request, [allow()], resource_policies=[named])
    with pytest.raises(NotImplementedError):
        iam.decide(request, [allow()], resource_policies=[{"Statement": [{"Effect": "Allow", "Principal": "*"}]}])


def test_a_service_key_reaches_only_the_actions_that_support_it():
    eni = "arn:aws:ec2:us-east-1:111122223333:network-interface/eni-0a1b"
    vpc = {"ec2:Vpc": "arn:aws:ec2:us-east-1:111122223333:vpc/vpc-0a1b"}
    assert iam.request("ec2:UnassignPrivateIpAddresses", eni, None, **vpc).context == vpc
    # eks:CreateAccessEntry knows no ec2:Vpc: a deny on it cannot stop that call.
    assert iam.request("eks:CreateAccessEntry", CLUSTER, None, **vpc).context == {}
    # Global keys are always there.
    principal = {"aws:PrincipalArn": ROLE}
    assert iam.request("eks:CreateAccessEntry", CLUSTER, None, **principal).context == principal
