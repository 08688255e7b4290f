//! Invoices people read: `q invoice` writes one HTML page for a project and period, with a
//! line per function and meter (quantity, unit price, amount), the total, a usage chart (SVG,
//! inline), and the priced proof's root and signer, so the customer can check every amount
//! with `q verify-proof` against the proof file written beside it.
//!
//! The amounts are the proof's own: each line's charge per meter as the proof carries it, the
//! total its statement's. The quantities and the chart are read from the same records (those
//! stored up to the proof's ingest), so the page and the proof agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use alloy_primitives::U256;

use crate::key::SigningKey;
use crate::period::Period;
use crate::proof::{self, Pricing, ProofFile, ProveError, Request};
use crate::rates::{Meter, Money, PRICE_PLACES, Price, decimal};
use crate::report::{ReportError, svg_chart};
use crate::store::{Store, StoreError, StoredRecord};

/// Why an invoice could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The proof could not be made.
    #[error(transparent)]
    Prove(#[from] ProveError),
    /// The chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] ReportError),
    /// Nothing to bill.
    #[error("project `{project}` has no usage in {period}: there is nothing to invoice")]
    Empty {
        /// The project.
        project: String,
        /// The period.
        period: String,
    },
}

/// One line of the invoice: a function's use of one meter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    /// The function.
    pub function: String,
    /// The meter.
    pub meter: Meter,
    /// How much, in the meter's unit.
    pub quantity: String,
    /// The price of one unit, or `varies` when it changed within the period.
    pub unit_price: String,
    /// The charge, in the currency.
    pub amount: String,
}

/// A made invoice.
#[derive(Debug, Clone)]
pub struct Invoice {
    /// The page.
    pub html: String,
    /// The priced proof its amounts come from.
    pub proof: ProofFile,
    /// Its lines.
    pub lines: Vec<Line>,
    /// The total, with the currency (`12.345600 EUR`).
    pub total: String,
}

/// What one function used of each meter, and the prices it was charged at.
#[derive(Default)]
struct Usage {
    quantity: BTreeMap<Meter, U256>,
    prices: BTreeMap<Meter, Vec<Price>>,
}

/// Makes the invoice of `project` over `period`, priced by `pricing` and proven with `key`
/// (the proof is noted in the store like any other).
pub async fn invoice(
    store: &Store,
    period: Period,
    project: &str,
    pricing: &Pricing,
    key: &SigningKey,
    chain_id: u64,
) -> Result<Invoice, InvoiceError> {
    let through = store.clock().await?;
    let mut rows: Vec<StoredRecord> = Vec::new();
    let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
    store
        .records_received(period.from_ms, period.to_ms, Some(project), (None, through), |r| {
            let used = usage.entry(r.function.clone()).or_default();
            for meter in Meter::ALL {
                let Some(price) = pricing.card.price(project, meter, r.window_start_ms) else {
                    continue;
                };
                let raw = meter.raw(&r.usage);
                *used.quantity.entry(meter).or_default() += raw;
                let seen = used.prices.entry(meter).or_default();
                if !seen.contains(&price) {
                    seen.push(price);
                }
            }
            rows.push(r);
            Ok(())
        })
        .await?;
    if rows.is_empty() {
        return Err(InvoiceError::Empty { project: project.into(), period: period.to_string() });
    }
    let request = Request { period, project: Some(project), chain_id, pricing: Some(pricing) };
    let proof = proof::prove_through(store, request, through, key).await?;

    let decimals = u32::from(proof.statement.decimals);
    let currency = &proof.statement.currency;
    let money = |amount: u128| Money { minor: U256::from(amount), decimals }.to_string();
    let mut lines = Vec::new();
    for item in &proof.line_items {
        let used = usage.get(&item.function);
        for (meter, amount) in &item.charges {
            let quantity = used.and_then(|u| u.quantity.get(meter)).copied().unwrap_or_default();
            let prices = used.and_then(|u| u.prices.get(meter));
            let unit_price = match prices.map(Vec::as_slice) {
                Some([one]) => decimal(one.units(), PRICE_PLACES),
                _ => "varies".into(),
            };
            lines.push(Line {
                function: item.function.clone(),
                meter: *meter,
                quantity: decimal(quantity, meter.places()),
                unit_price,
                amount: money(amount.0),
            });
        }
    }
    let total = format!("{} {currency}", money(proof.statement.totals.charge.0));
    let chart = svg_chart(&rows, period, Some(project))?;
    let html = page(&proof, project, period, &lines, &total, &chart);
    Ok(Invoice { html, proof, lines, total })
}

/// Text made safe to put in HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;color:#1d2330;\
margin:40px auto;max-width:980px;padding:0 24px}h1{font-size:28px;margin:0 0 4px}\
.sub{color:#5b6472;margin:0 0 28px}table{border-collapse:collapse;width:100%;margin:0 0 24px}\
th,td{padding:8px 10px;border-bottom:1px solid #e3e6eb;text-align:left}\
th{background:#f4f6f9;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#5b6472}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.sub td{font-weight:600;background:#fafbfc}\
tr.total td{font-size:22px;font-weight:700;border-top:2px solid #1d2330;border-bottom:none}\
.chart svg{width:100%;height:auto;border:1px solid #e3e6eb}\
.proof{background:#f4f6f9;padding:16px 20px;border-radius:6px;font-size:13px}\
.proof code{font-size:12px;word-break:break-all}";

/// The page.
fn page(
    proof: &ProofFile,
    project: &str,
    period: Period,
    lines: &[Line],
    total: &str,
    chart: &str,
) -> String {
    let s = &proof.statement;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Invoice: {project}, {period}</title><style>{STYLE}</style></head><body>\n\
         <h1>Usage invoice</h1><p class=\"sub\">Project <b>{project}</b> &middot; {period} \
         &middot; {currency}</p>\n<table><thead><tr><th>Function</th><th>Meter</th>\
         <th class=\"n\">Quantity</th><th>Unit</th><th class=\"n\">Unit price</th>\
         <th class=\"n\">Amount</th></tr></thead><tbody>\n",
        project = escape(project),
        period = escape(&period.to_string()),
        currency = escape(&s.currency),
    );
    for item in &proof.line_items {
        for line in lines.iter().filter(|l| l.function == item.function) {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&line.function),
                line.meter,
                line.quantity,
                line.meter.unit(),
                line.unit_price,
                line.amount
            );
        }
        let subtotal =
            Money { minor: U256::from(item.totals.charge.0), decimals: s.decimals.into() };
        let _ = writeln!(
            html,
            "<tr class=\"sub\"><td colspan=\"5\">{} ({} invocations)</td><td class=\"n\">{subtotal}</td></tr>",
            escape(&item.function),
            item.totals.invocations
        );
    }
    let _ = write!(
        html,
        "<tr class=\"total\"><td colspan=\"5\">Total</td><td class=\"n\" id=\"total\">{total}</td></tr>\n\
         </tbody></table>\n<div class=\"chart\">{chart}</div>\n\
         <div class=\"proof\"><p><b>Proof.</b> Every amount above is a line of a usage proof \
         signed by q; check it with <code>q verify-proof PROOF --signer {signer}</code>.</p>\
         <p>Root <code>{root}</code><br>Signer <code>{signer}</code><br>Rate card \
         <code>{rates}</code><br>Chain {chain} &middot; {records} records</p></div>\n\
         </body></html>\n",
        total = escape(total),
        chart = strip_xml_declaration(chart),
        signer = proof.signer,
        root = s.root,
        rates = s.rates_digest,
        chain = proof.domain.chain_id,
        records = s.totals.records,
    );
    html
}

/// The SVG without an `<?xml ...?>` line, which has no place inside HTML.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or(svg, |(_, body)| body.trim_start()),
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_svg_fits_in_html() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(strip_xml_declaration("<?xml version=\"1.0\"?>\n<svg/>"), "<svg/>");
        assert_eq!(strip_xml_declaration("<svg/>"), "<svg/>");
    }
}
