// The UI's entry point: a hash router over the four pages and the health
// pill in the header.

import { getJSON } from './api.js';
import { explore, live, operations, overview } from './pages.js';

const PAGES = { overview, live, explore, operations };
const main = document.getElementById('page');
let leave = () => {};

function route() {
  const decode = (part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/').map(decode);
  const page = PAGES[name] ? name : 'overview';
  const leaving = leave;
  leave = () => {};
  leaving();
  for (const link of document.querySelectorAll('header nav a')) {
    link.classList.toggle('active', link.dataset.page === page);
  }
  document.title = `Freshet · ${page[0].toUpperCase()}${page.slice(1)}`;
  document.body.dataset.page = page;
  leave = PAGES[page](main, rest) || (() => {});
}

async function health() {
  const pill = document.getElementById('health');
  try {
    const status = await getJSON('/healthz');
    pill.textContent = status.status === 'ok' ? 'healthy' : status.status;
    pill.className = `health ${status.status === 'ok' ? 'ok' : 'bad'}`;
  } catch {
    pill.textContent = 'unreachable';
    pill.className = 'health bad';
  }
  setTimeout(health, 5000);
}

window.addEventListener('hashchange', route);
route();
health();
