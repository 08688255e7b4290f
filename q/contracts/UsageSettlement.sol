// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {UsageVerifier} from "./UsageVerifier.sol";

/// @title UsageSettlement: an escrow that pays a provider exactly what q proved a project cost.
/// @notice The customer deposits; the provider submits a priced statement of the project signed
/// by the agreed q key and is paid its charge, once: a period is settled at most once and never
/// overlaps one settled before. Late records come as amendments (statements naming the root they
/// amend), each paid once, in order. After `closesAt` nothing more is settled and the customer
/// takes back what is left.
/// @dev The charge is in 10^-decimals of the agreed currency; `weiPerUnit` turns one such unit
/// into wei of the escrowed ether (an exchange rate agreed when the escrow is made).
contract UsageSettlement is UsageVerifier {
    address public immutable provider;
    address public immutable customer;
    bytes32 public immutable projectHash;
    bytes32 public immutable currencyHash;
    uint8 public immutable decimals;
    uint256 public immutable weiPerUnit;
    uint64 public immutable closesAt;

    /// The end of the last original period settled: the next must start at or after it.
    uint64 public settledUntil;
    /// Per period (keccak of start and end), the root last paid: an amendment must name it.
    mapping(bytes32 => bytes32) public lastRoot;

    event Deposited(address indexed from, uint256 amount);
    event Settled(uint64 periodStart, uint64 periodEnd, bytes32 root, bytes32 amends, uint256 paid);
    event Withdrawn(uint256 amount);

    constructor(
        address qSigner,
        address provider_,
        address customer_,
        string memory project,
        string memory currency,
        uint8 decimals_,
        uint256 weiPerUnit_,
        uint64 closesAt_
    ) UsageVerifier(qSigner) {
        require(qSigner != address(0) && provider_ != address(0) && customer_ != address(0), "zero address");
        require(bytes(project).length != 0, "a project must be named");
        require(bytes(currency).length != 0, "a currency must be named");
        provider = provider_;
        customer = customer_;
        projectHash = keccak256(bytes(project));
        currencyHash = keccak256(bytes(currency));
        decimals = decimals_;
        weiPerUnit = weiPerUnit_;
        closesAt = closesAt_;
    }

    /// The customer adds to the escrow.
    function deposit() external payable {
        require(msg.sender == customer, "only the customer deposits");
        emit Deposited(msg.sender, msg.value);
    }

    /// Pays the provider the charge of `s`, a priced statement of the project signed by q.
    function settle(Statement calldata s, bytes calldata signature) external returns (uint256 paid) {
        require(msg.sender == provider, "only the provider settles");
        require(block.timestamp < closesAt, "the escrow is closed");
        require(recoverSigner(statementDigest(s), signature) == signer, "not signed by the agreed q key");
        require(keccak256(bytes(s.project)) == projectHash, "a statement of another project");
        require(keccak256(bytes(s.currency)) == currencyHash && s.decimals == decimals, "another currency");
        require(s.periodStart < s.periodEnd, "an empty period");
        require(uint256(s.periodEnd) <= block.timestamp * 1000, "the period has not ended");
        bytes32 period = keccak256(abi.encode(s.periodStart, s.periodEnd));
        if (s.amends == bytes32(0)) {
            require(s.periodStart >= settledUntil, "the period was settled already or overlaps one that was");
            settledUntil = s.periodEnd;
        } else {
            require(lastRoot[period] == s.amends, "amends no proof last paid for this period");
        }
        require(s.root != bytes32(0) || s.charge == 0, "a charge without line items");
        lastRoot[period] = s.root == bytes32(0) ? keccak256(abi.encode(period)) : s.root;
        paid = uint256(s.charge) * weiPerUnit;
        require(address(this).balance >= paid, "the escrow holds less than the charge");
        emit Settled(s.periodStart, s.periodEnd, s.root, s.amends, paid);
        (bool ok,) = provider.call{value: paid}("");
        require(ok, "the payment failed");
    }

    /// Once closed, the customer takes back what is left.
    function withdraw() external returns (uint256 amount) {
        require(msg.sender == customer, "only the customer withdraws");
        require(block.timestamp >= closesAt, "the escrow is still open");
        amount = address(this).balance;
        emit Withdrawn(amount);
        (bool ok,) = customer.call{value: amount}("");
        require(ok, "the withdrawal failed");
    }
}
