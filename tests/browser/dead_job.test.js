// A dead job: found in the job browser, its error read on its page, retried, and seen
// to succeed; another one mended with "edit payload and retry" (a JSON check first);
// both retries are in the audit log.

import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {Hopper, withScreenshots, LOGIN_401} from './lib/harness.js';

const h = await Hopper.start({tokens: [{scope: 'admin', name: 'oncall'}]});
after(() => h.stop());

const Q = 'mend';

async function deadJob(payload) {
  const {id} = await h.enqueue({queue: Q, type: 'test.fail_if', payload, max_attempts: 1});
  const job = await h.api('GET', `/v1/jobs/${id}?wait=20s`);
  assert.equal(job.state, 'dead', JSON.stringify(job));
  return id;
}

test('open a dead job, read its error, retry it, see it succeed', {timeout: 120000}, withScreenshots(h, 'retry', async () => {
  await h.startWorker(Q, {threads: 2});
  const flag = path.join(h.dir, 'still-broken');
  fs.writeFileSync(flag, '');
  // An error with markup in it: it must show as text, never as HTML.
  const message = `the <b>flag</b> file ${flag} is still there`;
  const id = await deadJob({file: flag, message});

  const page = await h.page();
  await h.login(page, h.tokens.oncall, {hash: `#/jobs?queue=${Q}&state=dead`});
  const row = page.locator(`tr[data-id="${id}"]`);
  await row.waitFor();
  assert.match(await row.textContent(), /is still there/, 'the last error is in the list');
  await row.locator('a').click();

  await page.locator('.job-detail[data-state="dead"]').waitFor();
  const errorCell = page.locator('td.error-text').first();
  assert.equal((await errorCell.textContent()).trim(), message, 'the error, as text');
  assert.equal(await page.locator('td.error-text b').count(), 0, 'no markup from the error');
  assert.match(await page.locator('.timeline').textContent(), /attempt 1 failed/);
  const t = page.locator('.timeline time').first();
  assert.match(await t.getAttribute('title'), /UTC$/, 'times show UTC on hover');
  await h.shot(page, 'dead');

  // Mend the cause, then retry from the page: it runs again and succeeds, and the page
  // shows that by itself (live events).
  fs.unlinkSync(flag);
  await page.click('button[data-action="retry"]');
  await page.locator('.job-detail[data-state="succeeded"]').waitFor({timeout: 60000});
  assert.match(await page.locator('.job-detail').textContent(), /"ok": true/, 'the result is shown');
  assert.equal(await page.locator('button[data-action="retry"]').count(), 0, 'no retry for a succeeded job');
  await h.shot(page, 'succeeded');
  h.assertClean(page, [LOGIN_401]);
}));

test('edit the payload of a dead job and retry it', {timeout: 120000}, withScreenshots(h, 'edit', async () => {
  const id = await deadJob({fail: true, message: 'the payload says fail'});
  const page = h.pages[0];
  await page.goto(h.url(`#/job/${id}`));
  await page.locator('.job-detail[data-state="dead"]').waitFor();

  // The dialog: focus inside, Tab stays inside, Escape closes it and gives the focus back.
  const open = page.locator('button[data-action="edit-retry"]');
  await open.focus();
  await page.keyboard.press('Enter');
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'edit-payload');
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press('Tab');
    assert.ok(await page.evaluate(() => !!document.activeElement.closest('dialog')), `Tab ${i + 1} left the dialog`);
  }
  await page.keyboard.press('Escape');
  await dialog.waitFor({state: 'detached'});
  assert.equal(await page.evaluate(() => document.activeElement.dataset.action), 'edit-retry', 'focus is back on the button');

  // Open it again: not JSON is refused on the page, nothing is sent.
  await open.click();
  await dialog.waitFor();
  const area = page.locator('#edit-payload');
  assert.deepEqual(JSON.parse(await area.inputValue()), {fail: true, message: 'the payload says fail'});
  await area.fill('{"fail": false,');
  await page.click('button[data-action="send-retry"]');
  await page.locator('#edit-payload-error', {hasText: 'Not valid JSON'}).waitFor();
  assert.equal(await area.getAttribute('aria-invalid'), 'true');
  assert.equal((await h.api('GET', `/v1/jobs/${id}`)).state, 'dead', 'nothing was sent');
  await h.shot(page, 'invalid');

  // A good payload: the job runs again with it and succeeds.
  await area.fill('{"fail": false, "note": "fixed by hand", "big": 12345678901234567890}');
  await page.click('button[data-action="send-retry"]');
  await dialog.waitFor({state: 'detached'});
  await page.locator('.job-detail[data-state="succeeded"]').waitFor({timeout: 60000});
  const payload = await page.locator('.job-detail pre.json').first().textContent();
  assert.match(payload, /"note": "fixed by hand"/);
  assert.match(payload, /12345678901234567890/, 'a big integer keeps every digit');
  const job = await h.api('GET', `/v1/jobs/${id}`);
  assert.equal(job.state, 'succeeded');
  assert.equal(job.payload.note, 'fixed by hand');
  await h.shot(page);

  // Both retries are in the audit log, with who did them and how.
  await page.click('#nav a[data-route="audit"]');
  await page.locator('.table-audit tbody tr').first().waitFor();
  const audit = await page.locator('.table-audit tbody').textContent();
  assert.match(audit, new RegExp(`/v1/jobs/${id}/retry`), audit);
  assert.match(audit, /oncall/);
  assert.match(audit, /session/);
  await h.shot(page, 'audit');
  h.assertClean(page, [LOGIN_401]);
}));

test('filter dead jobs by type and error text, and retry what the filter selects', {timeout: 120000}, withScreenshots(h, 'bulk', async () => {
  const B = 'mend-bulk';
  // Six dead jobs: three with a "quota" error (two of type test.fail_if), three others.
  const make = async (type, message, mended) => {
    const payload = type === 'test.fail_if' ? {fail: !mended, message} : {permanent: true, message};
    const {id} = await h.enqueue({queue: B, type, payload, max_attempts: 1});
    return id;
  };
  const quota = [await make('test.fail', 'Quota exceeded for project A'), await make('test.fail', 'quota exceeded (B)'),
    await make('test.fail', 'QUOTA EXCEEDED, try later')];
  const other = [await make('test.fail', 'connection refused'), await make('test.fail', 'bad input'),
    await make('test.fail', 'timeout talking to upstream')];
  await h.startWorker(B, {threads: 2});
  for (const id of [...quota, ...other]) assert.equal((await h.api('GET', `/v1/jobs/${id}?wait=20s`)).state, 'dead');

  const page = h.pages[0];
  await page.goto(h.url(`#/jobs?queue=${B}&state=dead`));
  await page.waitForFunction(() => document.querySelectorAll('.job-list tbody tr[data-id]').length === 6);

  // Filter by error text (case-insensitive) with the form, by the keyboard.
  await page.fill('#f-error', 'quota exceeded');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash.includes('error=quota'));
  await page.waitForFunction(() => {
    const el = document.querySelector('.job-list');
    return el && !el.hasAttribute('aria-busy') && el.dataset.count === '3';
  });
  const shown = await page.locator('.job-list tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id).sort());
  assert.deepEqual(shown, [...quota].sort(), 'the filter shows the quota errors only');
  await h.shot(page, 'filtered');

  // A type that matches nothing.
  await page.fill('#f-type', 'test.nothing');
  await page.keyboard.press('Enter');
  await page.locator('.job-list tr.empty', {hasText: 'No job matches the filter'}).waitFor();
  await page.fill('#f-type', 'test.fail');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => {
    const el = document.querySelector('.job-list');
    return el && el.dataset.count === '3' && !el.hasAttribute('aria-busy') && location.hash.includes('type=test.fail');
  });

  // Bulk retry of what the filter selects, after a confirmation that says what.
  await page.click('button[data-action="bulk-retry"]');
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor();
  const text = await dialog.textContent();
  assert.match(text, /dead job in queue mend-bulk of type test\.fail whose errors contain “quota exceeded”/, text);
  await dialog.locator('button', {hasText: 'Retry them'}).click();
  await page.locator('.notice', {hasText: /Retried 3 of 3 matching jobs/}).waitFor();
  for (const id of quota) {
    const j = await h.api('GET', `/v1/jobs/${id}?wait=20s`);
    assert.equal(j.errors.length, 2, `${id} ran again: ${JSON.stringify(j.errors)}`);
  }
  for (const id of other) assert.equal((await h.api('GET', `/v1/jobs/${id}`)).errors.length, 1, `${id} was left alone`);
  await h.shot(page);
  h.assertClean(page, [LOGIN_401]);
}));
