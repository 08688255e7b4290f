// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title UsageVerifier: checks one line item of a Tau q usage proof.
/// @notice q signs a statement (period, project, root of a Merkle sum tree, totals, charge and
/// its currency, the rate card's digest, the root it amends) as EIP-712 typed data; a line item
/// (one function's sums and charge over the period) is accepted when the statement is signed by
/// the trusted q key and the item's path leads to the signed root, totals and charge.
/// The hashing is described in q/src/proof.rs; this contract and q must agree on every word.
contract UsageVerifier {
    /// Sums carried by every node of the tree.
    struct Sums {
        uint64 invocations;
        uint64 errors;
        uint64 wallMicros;
        uint64 cpuMicros;
        uint64 records;
        uint128 charge;
    }

    /// A node of the sum tree.
    struct Node {
        bytes32 hash;
        Sums sums;
    }

    /// One step of a path: the sibling met, and whether it is the left child.
    struct Step {
        Node sibling;
        bool left;
    }

    /// What q signs (EIP-712 type `UsageStatement`). An empty project covers every project;
    /// `amends` is zero for an original; `charge` is in 10^-decimals of `currency`; an unpriced
    /// statement has no currency and a zero `ratesDigest`.
    struct Statement {
        uint64 periodStart;
        uint64 periodEnd;
        string project;
        bytes32 amends;
        bytes32 root;
        uint64 invocations;
        uint64 errors;
        uint64 wallMicros;
        uint64 cpuMicros;
        uint64 records;
        uint128 charge;
        string currency;
        uint8 decimals;
        bytes32 ratesDigest;
    }

    /// One line item: a function's sums over the period.
    struct LineItem {
        string project;
        string functionName;
        Sums sums;
        bytes32 recordsDigest;
        bytes32 chargesDigest;
    }

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId)");
    bytes32 private constant STATEMENT_TYPEHASH = keccak256(
        "UsageStatement(uint64 periodStart,uint64 periodEnd,string project,bytes32 amends,bytes32 root,uint64 invocations,uint64 errors,uint64 wallMicros,uint64 cpuMicros,uint64 records,uint128 charge,string currency,uint8 decimals,bytes32 ratesDigest)"
    );
    /// Half the order of secp256k1: signatures with a larger s are malleated copies.
    uint256 private constant HALF_ORDER =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// The q key whose statements this contract trusts.
    address public immutable signer;

    constructor(address trustedSigner) {
        signer = trustedSigner;
    }

    /// The EIP-712 domain separator on this chain.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("Tau q usage"), keccak256("2"), block.chainid)
        );
    }

    /// The digest q signs for `s`.
    function statementDigest(Statement calldata s) public view returns (bytes32) {
        // Two halves, laid out as one abi.encode of the fifteen words would be.
        bytes memory head = abi.encode(
            STATEMENT_TYPEHASH,
            s.periodStart,
            s.periodEnd,
            keccak256(bytes(s.project)),
            s.amends,
            s.root,
            s.invocations,
            s.errors
        );
        bytes memory tail = abi.encode(
            s.wallMicros,
            s.cpuMicros,
            s.records,
            s.charge,
            keccak256(bytes(s.currency)),
            s.decimals,
            s.ratesDigest
        );
        bytes32 structHash = keccak256(bytes.concat(head, tail));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// The address that signed `digest`, or zero for a malformed or malleated signature.
    function recoverSigner(bytes32 digest, bytes calldata signature) internal pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) return address(0);
        return ecrecover(digest, v, r, s);
    }

    function leaf(LineItem calldata item) internal pure returns (Node memory) {
        return Node(
            keccak256(
                abi.encode(
                    uint256(0),
                    keccak256(bytes(item.project)),
                    keccak256(bytes(item.functionName)),
                    item.sums,
                    item.recordsDigest,
                    item.chargesDigest
                )
            ),
            item.sums
        );
    }

    function parent(Node memory l, Node memory r) internal pure returns (Node memory) {
        // Checked arithmetic: an overflowing sum reverts.
        Sums memory sums = Sums(
            l.sums.invocations + r.sums.invocations,
            l.sums.errors + r.sums.errors,
            l.sums.wallMicros + r.sums.wallMicros,
            l.sums.cpuMicros + r.sums.cpuMicros,
            l.sums.records + r.sums.records,
            l.sums.charge + r.sums.charge
        );
        return Node(keccak256(abi.encode(uint256(1), l, r)), sums);
    }

    /// True when `item`, with its `path`, is part of the statement `s` signed by the trusted key.
    function verifyLineItem(
        Statement calldata s,
        bytes calldata signature,
        LineItem calldata item,
        Step[] calldata path
    ) external view returns (bool) {
        if (recoverSigner(statementDigest(s), signature) != signer || signer == address(0)) {
            return false;
        }
        if (bytes(s.project).length != 0 && keccak256(bytes(s.project)) != keccak256(bytes(item.project))) {
            return false;
        }
        Node memory node = leaf(item);
        for (uint256 i = 0; i < path.length; i++) {
            Node memory sibling = path[i].sibling;
            node = path[i].left ? parent(sibling, node) : parent(node, sibling);
        }
        return node.hash == s.root && node.sums.invocations == s.invocations
            && node.sums.errors == s.errors && node.sums.wallMicros == s.wallMicros
            && node.sums.cpuMicros == s.cpuMicros && node.sums.records == s.records
            && node.sums.charge == s.charge;
    }
}
